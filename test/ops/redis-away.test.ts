/**
 * Replicas that start before Redis (issue 10, item 6): the real `kasgate serve`, with REDIS_URL at
 * a port where nothing listens yet. Each stays up, takes webhooks, delivers to its own agents, says
 * in /readyz what is wrong, and joins the bus when Redis comes: it catches up on what the other
 * replica stored meanwhile, and from then on other replicas' webhooks reach its agents by the
 * doorbell (the periodic sweep is set to an hour, so nothing else could bring them). A clean
 * SIGTERM then logs no warning.
 */
import { afterAll, expect, test } from 'vitest';
import { connectAgent, eventually, type TestAgent } from '../support/agent-client.js';
import { pushBody, nextProjectId } from '../support/fixtures.js';
import { createDeployment, startRedisServer, startReplicaProcess, type Deployment, type RedisServer, type ReplicaProcess } from '../support/replica-process.js';

let redis: RedisServer | undefined;
let deployment: Deployment | undefined;
const replicas: ReplicaProcess[] = [];
const agents: TestAgent[] = [];
afterAll(async () => {
  for (const agent of agents) await agent.close();
  for (const replica of replicas) if (replica.child.exitCode === null) await replica.stop();
  await redis?.close();
  await deployment?.cleanup();
});

interface LogLine {
  level: number;
  msg: string;
}
const parsed = (lines: string[]): LogLine[] =>
  lines.flatMap((line) => {
    try {
      return [JSON.parse(line) as LogLine];
    } catch {
      return [];
    }
  });

test('started with Redis away: serves, says why in /readyz, joins the bus when Redis comes, stops without a warning', { timeout: 60_000 }, async () => {
  redis = await startRedisServer();
  await redis.kill(); // the port is closed: connections are refused
  deployment = createDeployment({ redisUrl: redis.url, env: { KASGATE_SWEEP_SECONDS: '3600', KASGATE_DRAIN_SECONDS: '1' } });
  const d = deployment;
  const [a, b] = await Promise.all([startReplicaProcess(d.env, { name: 'early-a' }), startReplicaProcess(d.env, { name: 'early-b' })]);
  replicas.push(a, b);

  // Today's code died here, 0.5 s after "listening", of an unhandled MaxRetriesPerRequestError.
  await new Promise((r) => setTimeout(r, 1500));
  expect([a.child.exitCode, b.child.exitCode]).toEqual([null, null]);

  const ready = await fetch(`${a.url}/readyz`);
  expect({ status: ready.status, body: await ready.json() }).toEqual({
    status: 200,
    body: {
      status: 'ready',
      checks: {
        postgres: 'ok',
        redis: `unreachable at redis://127.0.0.1:${redis.port}: connection refused; cross-replica fan-out degraded to the periodic sweep (every 3600 s)`,
      },
    },
  });

  const projectId = nextProjectId();
  const path = `early/app-${projectId}`;
  const agent = await connectAgent(a.wsUrl, (await d.createAgent(a.url, 'early', path)).token);
  agents.push(agent);
  await agent.subscribe([path]);
  const post = async (replica: ReplicaProcess, after: string) => {
    const res = await d.postWebhook(replica.url, pushBody({ projectId, path, after }));
    expect(res.status).toBe(202);
    return ((await res.json()) as { eventId: string }).eventId;
  };
  const got = (eventId: string, timeoutMs = 5000) => agent.waitFor((f) => f.type === 'push' && f.eventId === eventId, timeoutMs);

  // Its own webhooks reach its own agents without Redis.
  await got(await post(a, 'a'.repeat(40)));
  // The other replica's do not (no bus, and the sweep is an hour away)...
  const whileAway = await post(b, 'b'.repeat(40));
  await new Promise((r) => setTimeout(r, 500));
  expect(agent.pushes().map((p) => p.eventId)).not.toContain(whileAway);

  // ...until Redis comes: the replica subscribes, catches up from Postgres, and /readyz says ok.
  await redis.start();
  await got(whileAway, 10_000);
  await eventually(
    async () => ((await (await fetch(`${a.url}/readyz`)).json()) as { checks: { redis: string } }).checks.redis,
    (state) => state === 'ok',
    10_000,
  );
  await eventually(
    async () => ((await (await fetch(`${b.url}/readyz`)).json()) as { checks: { redis: string } }).checks.redis,
    (state) => state === 'ok',
    10_000,
  );
  // From now on the doorbell brings the other replica's webhooks at once.
  const started = Date.now();
  await got(await post(b, 'c'.repeat(40)), 2000);
  expect(Date.now() - started).toBeLessThan(2000);

  // A clean stop: exit 0, and nothing at warn level or above once shutdown began.
  const { code } = await a.stop();
  expect(code).toBe(0);
  const lines = parsed(a.logs());
  const shutdownAt = lines.findIndex((l) => l.msg.startsWith('shutting down'));
  expect(shutdownAt).toBeGreaterThanOrEqual(0);
  expect(lines.slice(shutdownAt).filter((l) => l.level >= 40).map((l) => l.msg)).toEqual([]);
});
