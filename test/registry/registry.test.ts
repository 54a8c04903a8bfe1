/**
 * POST /webhooks/registry: container registry notifications (the Docker distribution envelope)
 * become artifact events of the project whose path is the longest known prefix of the repository,
 * stored, deduplicated by the registry's event id, and delivered only to agents that may see the project.
 */
import { describe, expect, test } from 'vitest';
import { connectAgent, eventually } from '../support/agent-client.js';
import { useGateway } from '../support/gateway.js';
import { fixtures, pushBody, registryFixtures } from '../support/fixtures.js';
import { metric, projectIdOf, push } from '../fanout/support/helpers.js';
import { newKey, readJson } from '../gitlab/support/webhooks.js';
import { envelope, EVENTS_V2, OTHER_REGISTRY_SECRET, postRegistry, REGISTRY_SECRET, registryEnv, registryEvent } from './support.js';

const PRIVATE = 0;
const PUBLIC = 20;

const gw = useGateway({ env: registryEnv });

async function logged(project: string | number): Promise<Record<string, unknown>[]> {
  const { status, body } = await gw.admin('GET', `/events?project=${encodeURIComponent(String(project))}&limit=1000`);
  expect(status).toBe(200);
  return body.events;
}

async function accepted(body: object | string | Buffer, headers: Record<string, string> = {}) {
  const res = await postRegistry(gw, body, headers);
  const answer = await readJson(res);
  expect({ status: res.status, answer }).toMatchObject({ status: 202, answer: { status: 'accepted' } });
  return answer as { eventId: string; eventIds: string[]; duplicate: boolean };
}

/** A path no other test uses, known to kasgate through a push with this visibility. */
let paths = 0;
async function knownProject(visibility: number | null, name = 'app'): Promise<string> {
  const path = `reg${++paths}-${newKey().slice(0, 6)}/${name}`;
  await push(gw, path, visibility);
  return path;
}

describe('the documented envelope', () => {
  test('a tagged push is stored field by field and reaches a subscribed agent as an artifact frame', async () => {
    // The pipeline fixture makes gitlab-org/gitlab-test (id 1, public, default branch master) known.
    const pipeline = await gw.postWebhook(fixtures.pipeline.raw, { 'x-gitlab-event': 'Pipeline Hook', 'idempotency-key': newKey() });
    expect(pipeline.status).toBe(202);
    const agent = await gw.createAgent('documented', 'gitlab-org/gitlab-test');
    const client = await connectAgent(gw.wsUrl, agent.token);
    // What the agent subscribes to for oci://<registry>/gitlab-org/gitlab-test/manifests: every prefix of two or more segments.
    await client.subscribe(['gitlab-org/gitlab-test', 'gitlab-org/gitlab-test/manifests']);

    const answer = await accepted(registryFixtures.taggedPush);
    expect(answer).toEqual({ status: 'accepted', eventId: answer.eventIds[0], eventIds: [expect.stringMatching(/^\d+$/)], duplicate: false });

    const frame = await client.waitFor((f) => f.type === 'artifact' && f.source === 'registry');
    expect(frame).toEqual({
      type: 'artifact',
      eventId: answer.eventId,
      source: 'registry',
      project: { id: 1, path: 'gitlab-org/gitlab-test', defaultBranch: 'master' },
      repository: 'gitlab-org/gitlab-test/manifests',
      tag: 'bcbb5ec3',
      digest: 'sha256:fea8895f450959fa676bcc1df0611ea93823a735a01205fd8622846041d0c7cf',
      receivedAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
    });
    const events = await eventually(
      () => logged(1),
      (list) => list.some((e) => e.id === answer.eventId && e.deliveredCount === 1),
    );
    expect(events.find((e) => e.id === answer.eventId)).toEqual({
      id: answer.eventId,
      kind: 'artifact',
      source: 'registry',
      projectId: 1,
      projectPath: 'gitlab-org/gitlab-test',
      visibility: PUBLIC,
      defaultBranch: 'master',
      repository: 'gitlab-org/gitlab-test/manifests',
      tag: 'bcbb5ec3',
      digest: 'sha256:fea8895f450959fa676bcc1df0611ea93823a735a01205fd8622846041d0c7cf',
      userUsername: 'root',
      receivedAt: (frame as { receivedAt: string }).receivedAt,
      deliveredCount: 1,
    });
    await client.close();
  });

  test('the documented push (layers and a manifest by digest) and the documented pull: 200 ignored, nothing stored', async () => {
    const before = await gw.admin('GET', '/events?limit=1000');
    for (const body of [registryFixtures.push, registryFixtures.pull]) {
      const res = await postRegistry(gw, body);
      expect({ status: res.status, answer: await readJson(res) }).toEqual({
        status: 200,
        answer: { status: 'ignored', reason: expect.stringMatching(/^nothing in the envelope changes a tag: /) },
      });
    }
    const after = await gw.admin('GET', '/events?limit=1000');
    expect(after.body.events).toHaveLength(before.body.events.length);
  });
});

describe('envelopes', () => {
  test('a pull and a tagless push together: 200 ignored, saying why', async () => {
    const path = await knownProject(PUBLIC);
    const res = await postRegistry(gw, envelope({ repository: path, action: 'pull', tag: 'v1' }, { repository: path, tag: null }));
    expect(await readJson(res)).toEqual({
      status: 'ignored',
      reason: 'nothing in the envelope changes a tag: 1 event not a push, 1 push without a tag',
    });
    expect(res.status).toBe(200);
    expect(await logged(path)).toHaveLength(1); // the push that made it known
  });

  test('several tagged pushes in one envelope: one event each, in order, listed in eventIds', async () => {
    const path = await knownProject(PUBLIC);
    const answer = await accepted(
      envelope({ repository: `${path}/a`, tag: 'v1' }, { repository: path, tag: null }, { repository: `${path}/b`, tag: 'v2' }),
    );
    expect(answer.eventIds).toHaveLength(2);
    expect(answer.eventId).toBe(answer.eventIds[0]);
    const artifacts = (await logged(path)).filter((e) => e.kind === 'artifact');
    expect(artifacts.map((e) => [e.id, e.repository, e.tag])).toEqual([
      [answer.eventIds[0], `${path}/a`, 'v1'],
      [answer.eventIds[1], `${path}/b`, 'v2'],
    ]);
  });

  test.each([EVENTS_V2, 'application/vnd.docker.distribution.events.v1+json', 'application/json; charset=utf-8'])(
    'Content-Type %s is accepted',
    async (contentType) => {
      const path = await knownProject(PUBLIC);
      const answer = await accepted(envelope({ repository: path, tag: 'v1' }), { 'content-type': contentType });
      expect(answer.eventIds).toHaveLength(1);
    },
  );

  test('a repository of no known project is ignored; beside a known one, only the known one is stored', async () => {
    const path = await knownProject(PUBLIC);
    const alone = await postRegistry(gw, envelope({ repository: 'nobody/knows/this', tag: 'v1' }));
    expect({ status: alone.status, answer: await readJson(alone) }).toEqual({
      status: 200,
      answer: { status: 'ignored', reason: 'no known project for repository "nobody/knows/this"' },
    });
    const mixed = await accepted(envelope({ repository: 'nobody/knows/this', tag: 'v1' }, { repository: path, tag: 'v2' }));
    expect(mixed.eventIds).toHaveLength(1);
    expect((await logged(path)).filter((e) => e.kind === 'artifact').map((e) => e.tag)).toEqual(['v2']);
  });

  test('the project is the longest known prefix of the repository, on segment boundaries, in any case', async () => {
    const group = `prefix-${newKey().slice(0, 6)}`;
    await push(gw, `${group}/App`, PUBLIC);
    await push(gw, `${group}/App/Sub`, PUBLIC);
    const answer = await accepted(
      envelope(
        { repository: `${group}/app/sub/image`, tag: 'a' },
        { repository: `${group}/app/sub`, tag: 'b' },
        { repository: `${group}/app/other/image`, tag: 'c' },
        { repository: `${group}/app`, tag: 'd' },
        { repository: `${group}/application/image`, tag: 'e' },
      ),
    );
    expect(answer.eventIds).toHaveLength(4);
    const byTag = async (path: string) =>
      (await logged(path)).filter((e) => e.kind === 'artifact').map((e) => [e.tag, e.projectPath, e.projectId]);
    expect(await byTag(`${group}/App/Sub`)).toEqual([
      ['a', `${group}/App/Sub`, projectIdOf(`${group}/App/Sub`)],
      ['b', `${group}/App/Sub`, projectIdOf(`${group}/App/Sub`)],
    ]);
    expect(await byTag(`${group}/App`)).toEqual([
      ['c', `${group}/App`, projectIdOf(`${group}/App`)],
      ['d', `${group}/App`, projectIdOf(`${group}/App`)],
    ]);
  });
});

describe('idempotency: the registry event id', () => {
  test('a retried notification is counted once: the same answer, one event, one frame', async () => {
    const path = await knownProject(PUBLIC);
    const agent = await gw.createAgent(`retry-${paths}`, path);
    const client = await connectAgent(gw.wsUrl, agent.token);
    await client.subscribe([path]);
    const body = envelope({ repository: path, tag: 'v1' });
    const first = await accepted(body);
    const retried = await accepted(body);
    const copies = await Promise.all(Array.from({ length: 5 }, () => accepted(body)));
    expect(first.duplicate).toBe(false);
    for (const answer of [retried, ...copies]) expect(answer).toEqual({ ...first, duplicate: true });
    expect((await logged(path)).filter((e) => e.kind === 'artifact').map((e) => e.id)).toEqual(first.eventIds);

    // A later event proves the retries sent nothing more.
    const later = await accepted(envelope({ repository: path, tag: 'v2' }));
    await client.waitFor((f) => f.type === 'artifact' && f.eventId === later.eventId);
    expect(client.artifacts().map((f) => f.eventId)).toEqual([first.eventId, later.eventId]);
    await client.close();
  });

  test('a registry event id equal to a GitLab Idempotency-Key is another key', async () => {
    const path = await knownProject(PUBLIC);
    const key = newKey();
    const res = await gw.postWebhook(pushBody({ path, projectId: projectIdOf(path), visibility: PUBLIC }), { 'idempotency-key': key });
    expect(res.status).toBe(202);
    const answer = await accepted(envelope({ repository: path, tag: 'v1', id: key }));
    expect(answer.duplicate).toBe(false);
  });
});

describe('the access rule', () => {
  test("a private project's artifact reaches its config-project agent, not an agent that may not see it", async () => {
    const path = await knownProject(PRIVATE);
    const marker = await knownProject(PUBLIC, 'marker');
    const owner = await connectAgent(gw.wsUrl, (await gw.createAgent(`owner-${paths}`, path)).token);
    const stranger = await connectAgent(gw.wsUrl, (await gw.createAgent(`stranger-${paths}`, `${marker}-cfg`)).token);
    await owner.subscribe([path]);
    const answer = await stranger.subscribe([path, `${path}/manifests`, marker]);
    expect(answer.projects.find((p) => p.path === path)?.access).toBe('unverified');

    const stored = await accepted(envelope({ repository: `${path}/manifests`, tag: 'v1' }));
    await owner.waitFor((f) => f.type === 'artifact' && f.eventId === stored.eventId);
    // Events reach a connection in id order: once the later public event is there, the private one was skipped.
    const later = await accepted(envelope({ repository: marker, tag: 'm' }));
    await stranger.waitFor((f) => f.type === 'artifact' && f.eventId === later.eventId);
    expect(stranger.artifacts().map((f) => f.eventId)).toEqual([later.eventId]);
    await owner.close();
    await stranger.close();
  });

  test('unknown visibility fails closed; the last visibility seen counts, so a project made public flows', async () => {
    const path = await knownProject(null);
    const watcher = await connectAgent(gw.wsUrl, (await gw.createAgent(`watcher-${paths}`, 'elsewhere/config')).token);
    await watcher.subscribe([path]);
    const hidden = await accepted(envelope({ repository: path, tag: 'hidden' }));
    expect((await logged(path)).find((e) => e.id === hidden.eventId)).toMatchObject({ visibility: null });

    const { eventId: publicPush } = await push(gw, path, PUBLIC);
    await watcher.waitFor((f) => f.type === 'push' && f.eventId === publicPush);
    const shown = await accepted(envelope({ repository: path, tag: 'shown' }));
    await watcher.waitFor((f) => f.type === 'artifact' && f.eventId === shown.eventId);
    expect(watcher.artifacts().map((f) => f.eventId)).toEqual([shown.eventId]);
    await watcher.close();
  });
});

describe('refused', () => {
  test('a wrong, missing or differently spelled secret is 401, and stores nothing; the other configured secret is accepted', async () => {
    const path = await knownProject(PUBLIC);
    const body = envelope({ repository: path, tag: 'v1' });
    const attempts: [string, Record<string, string>, string][] = [
      ['wrong secret', { authorization: `${REGISTRY_SECRET}x` }, 'invalid_token'],
      ['scheme in another case', { authorization: REGISTRY_SECRET.replace('Bearer', 'bearer') }, 'invalid_token'],
      ['secret without its scheme', { authorization: REGISTRY_SECRET.slice('Bearer '.length) }, 'invalid_token'],
      ['the GitLab webhook secret', { authorization: gw.webhookSecret, 'x-gitlab-token': gw.webhookSecret }, 'invalid_token'],
    ];
    for (const [label, headers, code] of attempts) {
      const res = await postRegistry(gw, body, headers);
      expect({ label, status: res.status, answer: await readJson(res) }).toEqual({
        label,
        status: 401,
        answer: { error: { code, message: expect.any(String) } },
      });
    }
    const missing = await fetch(`${gw.url}/webhooks/registry`, { method: 'POST', headers: { 'content-type': EVENTS_V2 }, body: JSON.stringify(body) });
    expect({ status: missing.status, code: (await readJson(missing)).error.code }).toEqual({ status: 401, code: 'missing_credentials' });
    expect((await logged(path)).filter((e) => e.kind === 'artifact')).toEqual([]);

    await accepted(body, { authorization: OTHER_REGISTRY_SECRET });
  });

  test.each([
    ['not JSON', '{"events":', 'invalid_json', 'body: not valid JSON'],
    ['not an object', '[]', 'invalid_body', 'body: must be a JSON object'],
    ['no events', '{}', 'invalid_payload', 'events: '],
    ['events not a list', '{"events":{}}', 'invalid_payload', 'events: '],
    ['an event that is not an object', '{"events":[42]}', 'invalid_payload', 'events[0]: must be an object'],
  ])('400 for a body %s', async (_label, body, code, message) => {
    const res = await postRegistry(gw, body);
    expect(res.status).toBe(400);
    const { error } = await readJson(res);
    expect(error.code).toBe(code);
    expect(error.message.startsWith(message)).toBe(true);
  });

  test('400 naming the field of a tagged push kasgate cannot store', async () => {
    const path = await knownProject(PUBLIC);
    const cases: [string, (e: Record<string, any>) => void, string][] = [
      ['no id', (e) => delete e.id, 'events[1].id'],
      ['no repository', (e) => delete e.target.repository, 'events[1].target.repository'],
      ['a NUL in the tag', (e) => (e.target.tag = 'v\u00001'), 'events[1].target.tag'],
      ['a 300-character id', (e) => (e.id = 'i'.repeat(300)), 'events[1].id'],
    ];
    for (const [label, edit, field] of cases) {
      const bad = registryEvent({ repository: path, tag: 'v1' });
      edit(bad);
      const res = await postRegistry(gw, { events: [registryEvent({ repository: path, tag: null }), bad] });
      const { error } = await readJson(res);
      expect({ label, status: res.status, code: error.code, field: error.message.split(':')[0] }).toEqual({
        label,
        status: 400,
        code: 'invalid_payload',
        field,
      });
    }
  });

  test('415 for a body that is not JSON by its Content-Type', async () => {
    for (const contentType of ['text/plain', 'application/octet-stream', '']) {
      const res = await postRegistry(gw, registryFixtures.taggedPush, { 'content-type': contentType });
      expect({ contentType, status: res.status, code: (await readJson(res)).error.code }).toEqual({
        contentType,
        status: 415,
        code: 'unsupported_media_type',
      });
    }
  });

  test('413 over KASGATE_MAX_BODY_BYTES, saying the limit', async () => {
    const res = await postRegistry(gw, JSON.stringify({ events: [], padding: 'x'.repeat(1_048_576) }));
    expect({ status: res.status, answer: await readJson(res) }).toEqual({
      status: 413,
      answer: { error: { code: 'body_too_large', message: 'body: larger than the 1048576-byte (1 MiB) limit' } },
    });
  });
});

test('notifications and their events are counted', async () => {
  expect(await metric(gw, 'kasgate_webhooks_total', 'kind="registry",outcome="accepted"')).toBeGreaterThan(0);
  expect(await metric(gw, 'kasgate_webhooks_total', 'kind="registry",outcome="duplicate"')).toBeGreaterThan(0);
  expect(await metric(gw, 'kasgate_webhooks_total', 'kind="registry",outcome="ignored"')).toBeGreaterThan(0);
  expect(await metric(gw, 'kasgate_webhooks_total', 'kind="registry",outcome="invalid_token"')).toBeGreaterThan(0);
  expect(await metric(gw, 'kasgate_webhooks_total', 'kind="registry",outcome="body_too_large"')).toBe(1);
  for (const outcome of ['accepted', 'duplicate', 'not_push', 'untagged', 'unknown_project']) {
    const n = await metric(gw, 'kasgate_registry_events_total', `outcome="${outcome}"`);
    expect({ outcome, counted: n > 0 }).toEqual({ outcome, counted: true });
  }
});

describe('without KASGATE_REGISTRY_SECRETS', () => {
  const bare = useGateway();

  test('every notification is 401, saying what to configure', async () => {
    const res = await postRegistry(bare, registryFixtures.taggedPush);
    expect({ status: res.status, answer: await readJson(res) }).toEqual({
      status: 401,
      answer: { error: { code: 'not_configured', message: 'no registry secret is configured (KASGATE_REGISTRY_SECRETS)' } },
    });
  });
});
