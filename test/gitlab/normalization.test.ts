/**
 * Push Hook, Tag Push Hook and System Hook bodies become one PushEvent: what lands in the log
 * (GET /api/v1/events) and in the projects table (GET /api/v1/projects/{id}), on both stores.
 */
import { describe, expect, test } from 'vitest';
import { useGateway } from '../support/gateway.js';
import { fixtures, nextProjectId, pushBody } from '../support/fixtures.js';
import { MODES, edited, newKey, readJson } from './support/webhooks.js';

const ZERO_SHA = '0'.repeat(40);

describe.each(MODES)('normalization on $mode', ({ options }) => {
  const gw = useGateway(options);

  async function deliver(body: object | string, event = 'Push Hook') {
    const res = await gw.postWebhook(body, { 'x-gitlab-event': event, 'idempotency-key': newKey() });
    expect(res.status).toBe(202);
    return ((await readJson(res)) as { eventId: string }).eventId;
  }

  async function logged(projectId: number) {
    const { status, body } = await gw.admin('GET', `/events?project=${projectId}`);
    expect(status).toBe(200);
    return body.events as Record<string, unknown>[];
  }

  async function project(projectId: number) {
    const { status, body } = await gw.admin('GET', `/projects/${projectId}`);
    expect(status).toBe(200);
    return body.project as Record<string, unknown>;
  }

  test('a system hook has no project.id: project_id is used', async () => {
    const id = nextProjectId();
    const body = edited(fixtures.systemPush.raw, (b) => {
      b.project_id = id;
      b.project.path_with_namespace = `sys/hooked-${id}`;
    });
    const eventId = await deliver(body, 'System Hook');
    expect(await logged(id)).toEqual([expect.objectContaining({ id: eventId, projectId: id, projectPath: `sys/hooked-${id}`, kind: 'push' })]);
    expect(await project(id)).toMatchObject({ id, path: `sys/hooked-${id}`, lastEventId: eventId });
  });

  test('a system hook tag_push is a tag push', async () => {
    const id = nextProjectId();
    const body = edited(fixtures.systemPush.raw, (b) => {
      b.event_name = 'tag_push';
      b.project_id = id;
      b.ref = 'refs/tags/v2';
    });
    await deliver(body, 'System Hook');
    expect(await logged(id)).toEqual([expect.objectContaining({ kind: 'tag_push', ref: 'refs/tags/v2' })]);
  });

  test('neither project.id nor project_id: 400 naming project_id', async () => {
    const body = edited(fixtures.systemPush.raw, (b) => delete b.project_id);
    const res = await gw.postWebhook(body, { 'x-gitlab-event': 'System Hook' });
    expect(res.status).toBe(400);
    expect((await readJson(res)).error.message).toContain('project_id');
  });

  test.each([
    ['public (20)', 20, 20],
    ['internal (10)', 10, 10],
    ['private (0)', 0, 0],
    ['missing', undefined, null],
    ['null', null, null],
    ['a string "20"', '20', null],
    ['an unknown level 30', 30, null],
  ])('visibility_level %s (%s) is stored as %s', async (_label, level, stored) => {
    const id = nextProjectId();
    const body = pushBody({ projectId: id, path: `vis/p${id}` });
    if (level === undefined) delete body.project.visibility_level;
    else body.project.visibility_level = level;
    await deliver(body);
    expect((await logged(id))[0]).toMatchObject({ visibility: stored });
    expect(await project(id)).toMatchObject({ visibility: stored });
  });

  test('a branch deletion (after all zeros) is an event', async () => {
    const id = nextProjectId();
    const body = pushBody({ projectId: id, path: `del/p${id}`, ref: 'refs/heads/feature' });
    body.after = ZERO_SHA;
    body.checkout_sha = null;
    body.commits = [];
    const eventId = await deliver(body);
    expect(await logged(id)).toEqual([
      expect.objectContaining({ id: eventId, ref: 'refs/heads/feature', after: ZERO_SHA, checkoutSha: null }),
    ]);
  });

  test('a tag deletion (after all zeros) is an event', async () => {
    const id = nextProjectId();
    const body = edited(fixtures.tagPush.raw, (b) => {
      b.project.id = b.project_id = id;
      b.before = 'a'.repeat(40);
      b.after = ZERO_SHA;
      b.checkout_sha = null;
    });
    await deliver(body, 'Tag Push Hook');
    expect(await logged(id)).toEqual([expect.objectContaining({ kind: 'tag_push', before: 'a'.repeat(40), after: ZERO_SHA })]);
  });

  test('the project row follows the latest push: rename, visibility change, default branch', async () => {
    const id = nextProjectId();
    const first = await deliver(pushBody({ projectId: id, path: `old/name-${id}`, visibility: 20, defaultBranch: 'main' }));
    expect(await project(id)).toMatchObject({ path: `old/name-${id}`, visibility: 20, defaultBranch: 'main', lastEventId: first });

    const second = await deliver(pushBody({ projectId: id, path: `new/Name-${id}`, visibility: 0, defaultBranch: 'trunk' }));
    expect(await project(id)).toMatchObject({ id, path: `new/Name-${id}`, visibility: 0, defaultBranch: 'trunk', lastEventId: second });
    // Each event keeps what its own push said.
    expect((await logged(id)).map((e) => [e.id, e.projectPath, e.visibility])).toEqual([
      [first, `old/name-${id}`, 20],
      [second, `new/Name-${id}`, 0],
    ]);
  });

  test('a missing default_branch, before and user are stored as unknown', async () => {
    const id = nextProjectId();
    const body = pushBody({ projectId: id });
    delete body.project.default_branch;
    delete body.before;
    delete body.user_username;
    delete body.checkout_sha;
    await deliver(body);
    expect((await logged(id))[0]).toMatchObject({ defaultBranch: null, before: null, userUsername: null, checkoutSha: null });
  });
});
