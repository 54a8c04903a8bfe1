/**
 * Pipeline Hook: a pipeline that succeeded becomes an artifact event (source pipeline) in the same
 * log as pushes: same ids, idempotency, access rule, replay and per-project order. Any other
 * pipeline state is 200 ignored. On Postgres and on the embedded store.
 */
import { describe, expect, test } from 'vitest';
import { connectAgent, eventually } from '../support/agent-client.js';
import { useGateway } from '../support/gateway.js';
import { fixtures, nextProjectId, pushBody } from '../support/fixtures.js';
import { MODES, edited, newKey, readJson } from './support/webhooks.js';

const PRIVATE = 0;
const PUBLIC = 20;

/** The documented pipeline, for another project, ref or status. */
function pipelineBody(variant: { projectId?: number; path?: string; visibility?: number; status?: string; ref?: string; tag?: boolean; id?: number; sha?: string } = {}) {
  return edited(fixtures.pipeline.raw, (b) => {
    if (variant.projectId !== undefined) b.project.id = variant.projectId;
    if (variant.path !== undefined) b.project.path_with_namespace = variant.path;
    if (variant.visibility !== undefined) b.project.visibility_level = variant.visibility;
    if (variant.status !== undefined) b.object_attributes.status = variant.status;
    if (variant.ref !== undefined) b.object_attributes.ref = variant.ref;
    if (variant.tag !== undefined) b.object_attributes.tag = variant.tag;
    if (variant.id !== undefined) b.object_attributes.id = variant.id;
    if (variant.sha !== undefined) b.object_attributes.sha = variant.sha;
  });
}

describe.each(MODES)('Pipeline Hook on $mode', ({ options }) => {
  const gw = useGateway(options);

  const post = (body: string | object, key: string | null = newKey(), event = 'Pipeline Hook') =>
    gw.postWebhook(body, { 'x-gitlab-event': event, ...(key ? { 'idempotency-key': key } : {}) });

  async function stored(body: string | object, key: string | null = newKey(), event = 'Pipeline Hook') {
    const res = await post(body, key, event);
    const answer = await readJson(res);
    expect({ status: res.status, answer }).toMatchObject({ status: 202, answer: { status: 'accepted' } });
    return answer as { eventId: string; duplicate: boolean };
  }

  async function logged(projectId: number) {
    const { body } = await gw.admin('GET', `/events?project=${projectId}&limit=1000`);
    return body.events as Record<string, any>[];
  }

  test('the documented successful pipeline is stored field by field and reaches the agent as an artifact frame', async () => {
    const agent = await gw.createAgent('pipeline-doc', 'gitlab-org/gitlab-test');
    const client = await connectAgent(gw.wsUrl, agent.token);
    await client.subscribe(['gitlab-org/gitlab-test']);
    const { eventId } = await stored(fixtures.pipeline.raw);

    const frame = await client.waitFor((f) => f.type === 'artifact');
    expect(frame).toEqual({
      type: 'artifact',
      eventId,
      source: 'pipeline',
      project: { id: 1, path: 'gitlab-org/gitlab-test', defaultBranch: 'master' },
      ref: 'refs/heads/master',
      sha: 'bcbb5ec396a2c0f828686f14fac9b80b780504f2',
      pipelineId: 31,
      receivedAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
    });
    const events = await eventually(
      () => logged(1),
      (list) => list.some((e) => e.id === eventId && e.deliveredCount === 1),
    );
    expect(events.find((e) => e.id === eventId)).toEqual({
      id: eventId,
      kind: 'artifact',
      source: 'pipeline',
      projectId: 1,
      projectPath: 'gitlab-org/gitlab-test',
      visibility: PUBLIC,
      defaultBranch: 'master',
      ref: 'refs/heads/master',
      sha: 'bcbb5ec396a2c0f828686f14fac9b80b780504f2',
      pipelineId: 31,
      userUsername: 'root',
      receivedAt: (frame as { receivedAt: string }).receivedAt,
      deliveredCount: 1,
    });
    // The pipeline made the project known, as a push would.
    const { body } = await gw.admin('GET', '/projects/gitlab-org%2Fgitlab-test');
    expect(body.project).toMatchObject({ id: 1, visibility: PUBLIC, defaultBranch: 'master', lastEventId: eventId });
    await client.close();
  });

  test('a tag pipeline carries refs/tags/…; a merge request pipeline keeps its full ref', async () => {
    const projectId = nextProjectId();
    await stored(pipelineBody({ projectId, path: `pipe/refs-${projectId}`, ref: 'v1.2.0', tag: true }));
    await stored(pipelineBody({ projectId, path: `pipe/refs-${projectId}`, ref: 'refs/merge-requests/7/head', tag: false }));
    expect((await logged(projectId)).map((e) => e.ref)).toEqual(['refs/tags/v1.2.0', 'refs/merge-requests/7/head']);
  });

  test.each(['failed', 'running', 'pending', 'canceled', 'skipped', 'created', 'manual'])(
    'a pipeline that is %s: 200 ignored, nothing stored',
    async (status) => {
      const projectId = nextProjectId();
      const res = await post(pipelineBody({ projectId, path: `pipe/ignored-${projectId}`, status }));
      expect({ status: res.status, answer: await readJson(res) }).toEqual({
        status: 200,
        answer: { status: 'ignored', reason: `pipeline status "${status}" is not success` },
      });
      expect(await logged(projectId)).toEqual([]);
    },
  );

  test.each([
    ['object_attributes.status', (b: any) => delete b.object_attributes.status],
    ['object_attributes.sha', (b: any) => delete b.object_attributes.sha],
    ['object_attributes.id', (b: any) => delete b.object_attributes.id],
    ['project.path_with_namespace', (b: any) => delete b.project.path_with_namespace],
    ['project.id', (b: any) => delete b.project.id],
  ])('a successful pipeline without %s: 400 naming it', async (field, edit) => {
    const res = await post(edited(fixtures.pipeline.raw, edit));
    const { error } = await readJson(res);
    expect({ status: res.status, code: error.code, field: error.message.split(':')[0] }).toEqual({ status: 400, code: 'invalid_payload', field });
  });

  test('idempotency as for pushes: the same key is a duplicate; the same pipeline under a new key is a new event', async () => {
    const projectId = nextProjectId();
    const body = pipelineBody({ projectId, path: `pipe/idem-${projectId}` });
    const key = newKey();
    const first = await stored(body, key);
    const again = await stored(body, key);
    expect(again).toEqual({ ...first, duplicate: true });
    // A pipeline retried to success again: GitLab sends a new delivery, with a new key.
    const rerun = await stored(body, newKey());
    expect(rerun.duplicate).toBe(false);
    expect((await logged(projectId)).map((e) => e.id)).toEqual([first.eventId, rerun.eventId]);
  });

  test("a private project's artifact reaches its config-project agent, not an agent that may not see it", async () => {
    const projectId = nextProjectId();
    const path = `pipe/private-${projectId}`;
    const markerPath = `pipe/marker-${projectId}`;
    const owner = await connectAgent(gw.wsUrl, (await gw.createAgent(`pipe-owner-${projectId}`, path)).token);
    const stranger = await connectAgent(gw.wsUrl, (await gw.createAgent(`pipe-stranger-${projectId}`, `${markerPath}-cfg`)).token);
    await owner.subscribe([path]);
    await stranger.subscribe([path, markerPath]);

    const { eventId } = await stored(pipelineBody({ projectId, path, visibility: PRIVATE }));
    await owner.waitFor((f) => f.type === 'artifact' && f.eventId === eventId);
    const marker = await stored(pipelineBody({ projectId: nextProjectId(), path: markerPath, visibility: PUBLIC }));
    await stranger.waitFor((f) => f.type === 'artifact' && f.eventId === marker.eventId);
    expect(stranger.artifacts().map((f) => f.eventId)).toEqual([marker.eventId]);
    await owner.close();
    await stranger.close();
  });

  test('pushes and artifacts of one project arrive in id order, live and replayed', async () => {
    const projectId = nextProjectId();
    const path = `pipe/order-${projectId}`;
    const agent = await gw.createAgent(`pipe-order-${projectId}`, path);
    const live = await connectAgent(gw.wsUrl, agent.token);
    await live.subscribe([path]);
    const ids: string[] = [];
    const start = (await stored(pushBody({ projectId, path }), newKey(), 'Push Hook')).eventId;
    for (let i = 0; i < 3; i++) {
      ids.push((await stored(pipelineBody({ projectId, path, id: 100 + i }))).eventId);
      ids.push((await stored(pushBody({ projectId, path, after: String(i).repeat(40) }), newKey(), 'Push Hook')).eventId);
    }
    const eventFrames = (client: typeof live) => client.frames.filter((f) => f.type === 'push' || f.type === 'artifact') as { type: string; eventId: string }[];
    await live.waitFor((f) => (f.type === 'push' || f.type === 'artifact') && f.eventId === ids.at(-1));
    expect(eventFrames(live).map((f) => f.eventId)).toEqual([start, ...ids]);
    expect(eventFrames(live).map((f) => f.type)).toEqual(['push', 'artifact', 'push', 'artifact', 'push', 'artifact', 'push']);
    await live.close();

    // An agent that was away resumes after the first push and gets the rest, artifacts included, in order.
    const replayed = await connectAgent(gw.wsUrl, agent.token);
    await replayed.subscribe([path], start);
    await replayed.waitFor((f) => (f.type === 'push' || f.type === 'artifact') && f.eventId === ids.at(-1));
    expect(eventFrames(replayed).map((f) => f.eventId)).toEqual(ids);
    await replayed.close();
  });
});
