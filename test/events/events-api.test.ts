/** GET /api/v1/events?project=&after=&limit=: the push event log as an admin sees it, on both stores. */
import { describe, expect, test } from 'vitest';
import { useGateway } from '../support/gateway.js';
import { nextProjectId, pushBody } from '../support/fixtures.js';
import { MODES, newKey, readJson } from '../gitlab/support/webhooks.js';
import { connectAgent, eventually } from '../support/agent-client.js';

interface LoggedEvent {
  id: string;
  projectId: number;
  projectPath: string;
  ref: string;
  deliveredCount: number;
}

describe.each(MODES)('GET /api/v1/events on $mode', ({ options }) => {
  const gw = useGateway(options);

  async function push(projectId: number, path: string, ref = 'refs/heads/main'): Promise<string> {
    const res = await gw.postWebhook(pushBody({ projectId, path, ref }), { 'idempotency-key': newKey() });
    expect(res.status).toBe(202);
    return ((await readJson(res)) as { eventId: string }).eventId;
  }

  async function list(query: string): Promise<{ events: LoggedEvent[]; nextAfter: string | null }> {
    const { status, body } = await gw.admin('GET', `/events${query}`);
    expect({ status, error: body.error }).toEqual({ status: 200, error: undefined });
    return body;
  }

  test('filters by project path in any case (plain or URL-encoded) and by numeric id', async () => {
    const id = nextProjectId();
    const other = nextProjectId();
    const mine = [await push(id, `Group/Sub/App-${id}`), await push(other, `group/other-${other}`), await push(id, `Group/Sub/App-${id}`)];
    const expected = [mine[0], mine[2]];
    for (const project of [`group/sub/app-${id}`, `GROUP/SUB/APP-${id}`, encodeURIComponent(`Group/Sub/App-${id}`), String(id)]) {
      const { events } = await list(`?project=${project}`);
      expect({ project, ids: events.map((e) => e.id) }).toEqual({ project, ids: expected });
      expect(events.every((e) => e.projectId === id && e.projectPath === `Group/Sub/App-${id}`)).toBe(true);
    }
  });

  test('a project that never pushed has an empty log', async () => {
    expect(await list(`?project=nobody/${newKey()}`)).toEqual({ events: [], nextAfter: null });
    expect(await list(`?project=${nextProjectId() + 100_000}`)).toEqual({ events: [], nextAfter: null });
  });

  test('pages oldest first with after and limit; nextAfter until the end', async () => {
    const id = nextProjectId();
    const ids: string[] = [];
    for (let i = 0; i < 7; i++) ids.push(await push(id, `page/p${id}`, `refs/heads/b${i}`));

    const pages: { ids: string[]; nextAfter: string | null }[] = [];
    let after: string | null = '0';
    while (after !== null && pages.length < 10) {
      const page: { events: LoggedEvent[]; nextAfter: string | null } = await list(`?project=${id}&limit=3&after=${after}`);
      pages.push({ ids: page.events.map((e) => e.id), nextAfter: page.nextAfter });
      after = page.nextAfter;
    }
    expect(pages).toEqual([
      { ids: ids.slice(0, 3), nextAfter: ids[2] },
      { ids: ids.slice(3, 6), nextAfter: ids[5] },
      { ids: ids.slice(6), nextAfter: null },
    ]);

    expect((await list(`?project=${id}&after=${ids[4]}`)).events.map((e) => e.ref)).toEqual(['refs/heads/b5', 'refs/heads/b6']);
    // Exactly a page left: one more, empty, page ends it.
    const lastFull = await list(`?project=${id}&after=${ids[3]}&limit=3`);
    expect(lastFull.nextAfter).toBe(ids[6]);
    expect(await list(`?project=${id}&after=${ids[6]}&limit=3`)).toEqual({ events: [], nextAfter: null });
  });

  test('an after past the largest bigint is a 400 naming it, not a 500; the largest one is an empty page', async () => {
    const res = await gw.admin('GET', '/events?after=9999999999999999999');
    expect(res.status).toBe(400);
    expect(res.body.error.message).toContain('querystring.after');
    expect(await list('?after=9223372036854775807')).toEqual({ events: [], nextAfter: null });
  });

  test('without a filter: every project, in id order, 100 by default', async () => {
    const id = nextProjectId();
    await push(id, `all/p${id}`);
    const { events } = await list('');
    expect(events.length).toBeGreaterThan(0);
    expect(events.length).toBeLessThanOrEqual(100);
    const numeric = events.map((e) => BigInt(e.id));
    expect(numeric).toEqual([...numeric].sort((a, b) => (a < b ? -1 : 1)));
  });

  test('deliveredCount is 0 while no agent receives the event', async () => {
    const id = nextProjectId();
    await push(id, `lonely/p${id}`);
    const { events } = await list(`?project=${id}`);
    expect(events.map((e) => e.deliveredCount)).toEqual([0]);
  });

  test('deliveredCount counts agents: an agent that got the event on two connections and again by replay counts once', async () => {
    const id = nextProjectId();
    const path = `counted/p${id}`;
    const one = await gw.createAgent(`counted-one-${id}`, `counted/config-${id}`);
    const other = await gw.createAgent(`counted-other-${id}`, `counted/config-${id}`);
    const sockets = [await connectAgent(gw.wsUrl, one.token), await connectAgent(gw.wsUrl, one.token)];
    try {
      for (const socket of sockets) await socket.subscribe([path]);
      const res = await gw.postWebhook(pushBody({ projectId: id, path, visibility: 20 }), { 'idempotency-key': newKey() });
      const { eventId } = (await readJson(res)) as { eventId: string };
      const got = (socket: (typeof sockets)[number]) => socket.waitFor((f) => f.type === 'push' && f.eventId === eventId);
      for (const socket of sockets) await got(socket);
      // The same agent once more, by replay, and a second agent by replay: four frames, two agents.
      for (const token of [one.token, other.token]) {
        const late = await connectAgent(gw.wsUrl, token);
        sockets.push(late);
        await late.subscribe([path], String(BigInt(eventId) - 1n));
        await got(late);
      }
      const count = async () => (await list(`?project=${id}`)).events.map((e) => e.deliveredCount);
      await eventually(count, (c) => c.join() === '2');
      await new Promise((resolve) => setTimeout(resolve, 1500));
      expect(await count()).toEqual([2]);
    } finally {
      for (const socket of sockets) await socket.close();
    }
  });

  test.each([
    ['limit=0', 'limit'],
    ['limit=1001', 'limit'],
    ['limit=abc', 'limit'],
    ['after=abc', 'after'],
    ['after=-1', 'after'],
    ['after=01', 'after'],
  ])('400 naming the parameter for %s', async (query, field) => {
    const { status, body } = await gw.admin('GET', `/events?${query}`);
    expect(status).toBe(400);
    expect(body.error.message).toContain(field);
  });

  test('401 without the admin token', async () => {
    const res = await fetch(`${gw.url}/api/v1/events`);
    expect(res.status).toBe(401);
    expect(await readJson(res)).toEqual({ error: { code: 'unauthorized', message: expect.any(String) } });
  });
});
