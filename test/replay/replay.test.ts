import { describe, expect, test } from 'vitest';
import { useGateway } from '../support/gateway.js';
import { connectAgent, eventually, type TestAgent } from '../support/agent-client.js';
import { pushBody } from '../support/fixtures.js';
import { queryInSchema } from '../support/isolation.js';
import { expectedIds, type AgentRights } from './entitlement.js';
import { inLanes, loggedEvents, readMetric, seededRandom, VISIBILITIES } from './support.js';

const gw = useGateway();

async function post(path: string, visibility: number | null, projectId = 4000): Promise<string> {
  const res = await gw.postWebhook(pushBody({ path, visibility, projectId }));
  const body = (await res.json()) as { eventId: string };
  if (res.status !== 202) throw new Error(`webhook answered ${res.status}: ${JSON.stringify(body)}`);
  return body.eventId;
}

const pushedIds = (agent: TestAgent) => agent.pushes().map((p) => p.eventId);

/** Posts to the agent's config project and waits for it: everything before it has arrived then. */
async function sentinel(agent: TestAgent, configProject: string): Promise<string> {
  const id = await post(configProject, 0);
  await agent.waitFor((f) => f.type === 'push' && f.eventId === id, 15_000);
  return id;
}

describe('replay on subscribe', () => {
  test('resumeAfter gets exactly the allowed stored events after it, then live ones, with webhooks arriving meanwhile', { timeout: 40_000 }, async () => {
    const rights: AgentRights = {
      configProject: 'rp/app',
      projects: ['rp/granted'],
      groups: ['rp-group'],
      subscribed: ['RP/App', 'rp/granted', 'rp-group/x', 'rp/mixed'],
    };
    const paths = ['rp/app', 'Rp/Granted', 'rp-group/x', 'rp/mixed', 'rp/unsubscribed', 'rp-groupie/x'];
    const agentInfo = await gw.createAgent('replayer', rights.configProject);
    expect((await gw.admin('PUT', `/agents/${agentInfo.id}/grants`, { projects: rights.projects, groups: rights.groups })).status).toBe(200);

    // A backlog of several replay pages, every visibility on every path.
    await queryInSchema(
      gw.schema,
      `INSERT INTO push_events (kind, project_id, project_path, visibility, default_branch, ref, before_sha, after_sha)
       SELECT 'push', 4000 + g % 6, ($1::text[])[1 + g % 6], ($2::int[])[1 + (g / 6) % 4], 'main', 'refs/heads/main',
              repeat('0', 40), md5(g::text) || 'abcdefgh'
       FROM generate_series(0, 2999) AS g`,
      [paths, [20, 10, 0, -1]],
    );
    await queryInSchema(gw.schema, 'UPDATE push_events SET visibility = NULL WHERE visibility = -1');
    const [cursorRow] = await queryInSchema<{ id: string }>(gw.schema, 'SELECT id::text FROM push_events ORDER BY push_events.id OFFSET 199 LIMIT 1');
    const cursor = cursorRow!.id;
    const backlogEnd = (await loggedEvents(gw.schema)).at(-1)!.id;
    const replayedBefore = await readMetric(gw.url, 'kasgate_events_replayed_total');

    // Webhooks keep arriving while the agent subscribes and its replay runs.
    const random = seededRandom(5);
    let accepted = 0;
    const concurrent = inLanes(240, 6, async () => {
      await post(paths[Math.floor(random() * paths.length)]!, VISIBILITIES[Math.floor(random() * 4)]!);
      accepted++;
    });
    await eventually(() => accepted, (n) => n >= 20);
    const agent = await connectAgent(gw.wsUrl, agentInfo.token);
    const acceptedAtSubscribe = accepted;
    await agent.subscribe(rights.subscribed, cursor);
    await concurrent;
    const last = await sentinel(agent, rights.configProject);

    const expected = expectedIds(rights, await loggedEvents(gw.schema), cursor);
    expect(expected.at(-1)).toBe(last);
    expect(pushedIds(agent)).toEqual(expected);
    const replayed = (await readMetric(gw.url, 'kasgate_events_replayed_total')) - replayedBefore;
    console.log(
      `replay: ${expected.length} events after the cursor, ${replayed} of them replayed from the log; ` +
        `${acceptedAtSubscribe} concurrent webhooks accepted before the subscribe, ${240 - acceptedAtSubscribe} after`,
    );
    // The backlog came from the log; live events only after it.
    const backlog = expectedIds(rights, (await loggedEvents(gw.schema)).filter((e) => BigInt(e.id) <= BigInt(backlogEnd)), cursor);
    expect(backlog.length).toBeGreaterThan(1000);
    expect(replayed).toBeGreaterThanOrEqual(backlog.length);
    expect(replayed).toBeLessThanOrEqual(expected.length);
    await agent.close();
  });

  test('without resumeAfter, the cursor stored by acks is used; with neither, only live events flow', async () => {
    const info = await gw.createAgent('acker', 'ack/app');
    const first = await connectAgent(gw.wsUrl, info.token);
    const before = await post('ack/app', 0);
    await first.subscribe(['ack/app']);
    const ids = [await post('ack/app', 0), await post('ack/app', 10), await post('ack/app', null)];
    await first.waitFor((f) => f.type === 'push' && f.eventId === ids[2]);
    // No cursor and no resumeAfter: the event stored before the subscribe was not replayed.
    expect(pushedIds(first)).toEqual(ids);

    first.send({ type: 'ack', eventId: ids[0] });
    await eventually(
      () => queryInSchema<{ event_id: string }>(gw.schema, 'SELECT event_id::text FROM agent_cursors WHERE agent_id = $1', [info.id]),
      (rows) => rows[0]?.event_id === ids[0],
    );
    await first.close();
    const whileAway = await post('ack/app', 0);

    const second = await connectAgent(gw.wsUrl, info.token);
    await second.subscribe(['ack/app']);
    const live = await sentinel(second, 'ack/app');
    expect(pushedIds(second)).toEqual([ids[1], ids[2], whileAway, live]);
    expect(BigInt(before)).toBeLessThan(BigInt(ids[0]!));
    await second.close();
  });
});

describe('resync', () => {
  /** Stores n events of a project and backdates the first `old` of them past the 24h window. */
  async function logWithExpiredHead(path: string, n: number, old: number): Promise<string[]> {
    const ids: string[] = [];
    for (let i = 0; i < n; i++) ids.push(await post(path, 0));
    await queryInSchema(gw.schema, "UPDATE push_events SET received_at = now() - interval '2 days' WHERE id = ANY($1::bigint[])", [
      ids.slice(0, old),
    ]);
    await gw.ctx.retention.runNow();
    return ids;
  }

  test('a cursor older than the retained log gets resync cursor_expired, then what is left, then live events', async () => {
    const ids = await logWithExpiredHead('rs/app', 5, 3);
    const info = await gw.createAgent('expired', 'rs/app');
    const resyncsBefore = await readMetric(gw.url, 'kasgate_resyncs_sent_total');
    const replayedBefore = await readMetric(gw.url, 'kasgate_events_replayed_total');

    const agent = await connectAgent(gw.wsUrl, info.token);
    await agent.subscribe(['rs/app'], ids[0]);
    // The replay read the log before the sentinel exists; otherwise the sentinel could be replayed too.
    await agent.waitFor((f) => f.type === 'push' && f.eventId === ids[4]);
    const live = await sentinel(agent, 'rs/app');
    const types = agent.frames.map((f) => (f.type === 'push' ? f.eventId : f.type));
    expect(types).toEqual(['hello', 'subscribed', 'resync', ids[3], ids[4], live]);
    expect(agent.frames[2]).toEqual({ type: 'resync', reason: 'cursor_expired' });
    expect((await readMetric(gw.url, 'kasgate_resyncs_sent_total')) - resyncsBefore).toBe(1);
    expect((await readMetric(gw.url, 'kasgate_events_replayed_total')) - replayedBefore).toBe(2);
    await agent.close();
  });

  test('a cursor exactly at the pruned edge resumes without a resync', async () => {
    const ids = await logWithExpiredHead('rs/edge', 4, 2);
    const info = await gw.createAgent('edge', 'rs/edge');
    const agent = await connectAgent(gw.wsUrl, info.token);
    await agent.subscribe(['rs/edge'], ids[1]);
    const live = await sentinel(agent, 'rs/edge');
    expect(agent.frames.map((f) => (f.type === 'push' ? f.eventId : f.type))).toEqual(['hello', 'subscribed', ids[2], ids[3], live]);
    await agent.close();
  });

  test('a cursor ahead of the log (a log that was reset) gets resync, then live events', async () => {
    const info = await gw.createAgent('ahead', 'rs/ahead');
    const agent = await connectAgent(gw.wsUrl, info.token);
    await agent.subscribe(['rs/ahead'], '9000000000');
    await agent.waitFor((f) => f.type === 'resync');
    const live = await sentinel(agent, 'rs/ahead');
    expect(agent.frames.map((f) => (f.type === 'push' ? f.eventId : f.type))).toEqual(['hello', 'subscribed', 'resync', live]);
    await agent.close();
  });
});

describe('an emptied log', () => {
  const short = useGateway({ env: { KASGATE_EVENT_RETENTION: '1s' } });

  test('a cursor at the last pruned event resumes without a resync although no event is left', async () => {
    const info = await short.createAgent('empty', 'em/app');
    const res = await short.postWebhook(pushBody({ path: 'em/app', visibility: 0, projectId: 4100 }));
    const { eventId } = (await res.json()) as { eventId: string };
    await eventually(
      async () => {
        await short.ctx.retention.runNow();
        return queryInSchema<{ n: string }>(short.schema, 'SELECT count(*)::text AS n FROM push_events');
      },
      (rows) => rows[0]?.n === '0',
    );
    const agent = await connectAgent(short.wsUrl, info.token);
    await agent.subscribe(['em/app'], eventId);
    const next = (await (await short.postWebhook(pushBody({ path: 'em/app', visibility: 0, projectId: 4100 }))).json()) as { eventId: string };
    await agent.waitFor((f) => f.type === 'push' && f.eventId === next.eventId);
    expect(agent.frames.map((f) => (f.type === 'push' ? f.eventId : f.type))).toEqual(['hello', 'subscribed', next.eventId]);
    await agent.close();
  });
});
