/**
 * System Hook repository_update (on by default for a new system hook, and the only hook GitLab
 * fires for a push of more than three refs): one push or tag push per changed branch or tag, each
 * with its own idempotency key derived from the delivery's. On Postgres and on the embedded store.
 */
import { describe, expect, test } from 'vitest';
import { connectAgent } from '../support/agent-client.js';
import { useGateway } from '../support/gateway.js';
import { fixtures, nextProjectId, pushBody } from '../support/fixtures.js';
import { MODES, edited, newKey, readJson } from './support/webhooks.js';

const ZERO = '0'.repeat(40);
const sha = (c: string) => c.repeat(40);

interface Change {
  before?: string;
  after: string;
  ref: string;
}

/** The documented repository_update for another project and changes. */
const repositoryUpdate = (projectId: number, path: string, changes: Change[]) =>
  edited(fixtures.repositoryUpdate.raw, (b) => {
    b.project_id = projectId;
    b.project.path_with_namespace = path;
    b.changes = changes;
    b.refs = changes.map((c) => c.ref);
  });

describe.each(MODES)('repository_update on $mode', ({ options }) => {
  const gw = useGateway(options);

  async function deliver(body: string | object, key: string | null = newKey(), event = 'System Hook') {
    const res = await gw.postWebhook(body, { 'x-gitlab-event': event, ...(key ? { 'idempotency-key': key } : {}) });
    const answer = await readJson(res);
    expect({ status: res.status, answer }).toMatchObject({ status: 202, answer: { status: 'accepted' } });
    return answer as { eventId: string; eventIds: string[]; duplicate: boolean };
  }

  async function logged(projectId: number) {
    const { body } = await gw.admin('GET', `/events?project=${projectId}&limit=1000`);
    return body.events as Record<string, any>[];
  }

  test('the documented payload is one push, stored field by field and delivered', async () => {
    const agent = await gw.createAgent('repo-update-doc', 'jsmith/example');
    const client = await connectAgent(gw.wsUrl, agent.token);
    await client.subscribe(['jsmith/example']);
    const answer = await deliver(fixtures.repositoryUpdate.raw);
    expect(answer).toEqual({ status: 'accepted', eventId: answer.eventIds[0], eventIds: [expect.stringMatching(/^\d+$/)], duplicate: false });

    expect((await logged(1)).find((e) => e.id === answer.eventId)).toEqual({
      id: answer.eventId,
      kind: 'push',
      projectId: 1,
      projectPath: 'jsmith/example',
      visibility: 0,
      defaultBranch: 'master',
      ref: 'refs/heads/master',
      before: '8205ea8d81ce0c6b90fbe8280d118cc9fdad6130',
      after: '4045ea7a3df38697b3730a20fb73c8bed8a3e69e',
      checkoutSha: '4045ea7a3df38697b3730a20fb73c8bed8a3e69e',
      userUsername: null,
      receivedAt: expect.any(String),
      deliveredCount: expect.any(Number),
    });
    expect(await client.waitFor((f) => f.type === 'push')).toEqual({
      type: 'push',
      eventId: answer.eventId,
      project: { id: 1, path: 'jsmith/example', defaultBranch: 'master' },
      ref: 'refs/heads/master',
      before: '8205ea8d81ce0c6b90fbe8280d118cc9fdad6130',
      after: '4045ea7a3df38697b3730a20fb73c8bed8a3e69e',
      receivedAt: expect.any(String),
    });
    await client.close();
  });

  test('a push of five refs (GitLab sends no push hooks past three): one event per branch or tag, in order', async () => {
    const id = nextProjectId();
    const path = `repo/many-${id}`;
    const changes: Change[] = [
      { before: ZERO, after: sha('a'), ref: 'refs/heads/new-branch' },
      { before: sha('b'), after: sha('c'), ref: 'refs/heads/main' },
      { before: sha('d'), after: ZERO, ref: 'refs/heads/gone' },
      { before: ZERO, after: sha('e'), ref: 'refs/tags/v1.0.0' },
      { before: ZERO, after: sha('f'), ref: 'refs/keep-around/ffff' },
      { after: sha('1'), ref: 'refs/tags/v1.0.1' },
    ];
    const answer = await deliver(repositoryUpdate(id, path, changes));
    expect(answer.eventIds).toHaveLength(5);
    const events = await logged(id);
    expect(events.map((e) => e.id)).toEqual(answer.eventIds);
    expect(events.map((e) => [e.kind, e.ref, e.before, e.after, e.checkoutSha])).toEqual([
      ['push', 'refs/heads/new-branch', ZERO, sha('a'), sha('a')],
      ['push', 'refs/heads/main', sha('b'), sha('c'), sha('c')],
      ['push', 'refs/heads/gone', sha('d'), ZERO, null],
      ['tag_push', 'refs/tags/v1.0.0', ZERO, sha('e'), null],
      ['tag_push', 'refs/tags/v1.0.1', null, sha('1'), null],
    ]);
  });

  test('a redelivery is one duplicate answer with the same ids; each change keeps its own key', async () => {
    const id = nextProjectId();
    const body = repositoryUpdate(id, `repo/redeliver-${id}`, [
      { before: sha('a'), after: sha('b'), ref: 'refs/heads/main' },
      { before: sha('c'), after: sha('d'), ref: 'refs/heads/dev' },
    ]);
    const key = newKey();
    const first = await deliver(body, key);
    const again = await deliver(body, key);
    expect(again).toEqual({ ...first, duplicate: true });
    expect((await logged(id)).map((e) => e.id)).toEqual(first.eventIds);
    // The delivery's key as a push hook's key is another event: derived keys live apart.
    const push = await deliver(pushBody({ projectId: id, path: `repo/redeliver-${id}` }), key, 'Push Hook');
    expect(push.duplicate).toBe(false);
  });

  test('without a key there is no dedup: the same delivery twice stores its changes twice', async () => {
    const id = nextProjectId();
    const body = repositoryUpdate(id, `repo/nokey-${id}`, [{ before: sha('a'), after: sha('b'), ref: 'refs/heads/main' }]);
    await deliver(body, null);
    await deliver(body, null);
    expect(await logged(id)).toHaveLength(2);
  });

  test('with both Push events and Repository update events ticked, a push is two events and both reach the agent', async () => {
    const id = nextProjectId();
    const path = `repo/both-${id}`;
    const client = await connectAgent(gw.wsUrl, (await gw.createAgent(`both-${id}`, path)).token);
    await client.subscribe([path]);
    const systemPush = edited(fixtures.systemPush.raw, (b) => {
      b.project_id = id;
      b.project.path_with_namespace = path;
      b.before = sha('a');
      b.after = b.checkout_sha = sha('b');
      b.ref = 'refs/heads/main';
    });
    await deliver(systemPush);
    await deliver(repositoryUpdate(id, path, [{ before: sha('a'), after: sha('b'), ref: 'refs/heads/main' }]));
    await client.waitFor(() => client.pushes().length === 2);
    expect(client.pushes().map((p) => [p.ref, p.after])).toEqual([
      ['refs/heads/main', sha('b')],
      ['refs/heads/main', sha('b')],
    ]);
    await client.close();
  });

  test('changes only to refs that are neither branches nor tags: 200 ignored', async () => {
    const id = nextProjectId();
    const res = await gw.postWebhook(repositoryUpdate(id, `repo/other-${id}`, [{ before: ZERO, after: sha('a'), ref: 'refs/merge-requests/1/head' }]), {
      'x-gitlab-event': 'System Hook',
    });
    expect({ status: res.status, answer: await readJson(res) }).toEqual({
      status: 200,
      answer: { status: 'ignored', reason: 'repository_update changed no branch or tag (1 change)' },
    });
    expect(await logged(id)).toEqual([]);
  });

  test.each([
    ['changes', (b: any) => delete b.changes],
    ['changes[0].after', (b: any) => delete b.changes[0].after],
    ['changes[0].ref', (b: any) => (b.changes[0].ref = 42)],
    ['project.path_with_namespace', (b: any) => delete b.project.path_with_namespace],
    ['project_id', (b: any) => delete b.project_id],
  ])('400 naming %s', async (field, edit) => {
    const res = await gw.postWebhook(edited(fixtures.repositoryUpdate.raw, edit), { 'x-gitlab-event': 'System Hook' });
    const { error } = await readJson(res);
    expect({ status: res.status, code: error.code, field: error.message.split(':')[0] }).toEqual({ status: 400, code: 'invalid_payload', field });
  });

  test('a push hook without before reaches the agent with before: null (unknown, not "branch created")', async () => {
    const id = nextProjectId();
    const path = `repo/nobefore-${id}`;
    const client = await connectAgent(gw.wsUrl, (await gw.createAgent(`nobefore-${id}`, path)).token);
    await client.subscribe([path]);
    const body = pushBody({ projectId: id, path });
    delete body.before;
    const { eventId } = await deliver(body, newKey(), 'Push Hook');
    expect(await client.waitFor((f) => f.type === 'push' && f.eventId === eventId)).toMatchObject({ before: null });
    await client.close();
  });
});
