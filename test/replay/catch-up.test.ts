/**
 * The doorbell (Redis pub/sub) is only a hint: events whose doorbell never rang, or rang while
 * a replica was not listening, still reach the agents, from Postgres.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { Redis } from 'ioredis';
import { startGateway, type TestGateway } from '../support/gateway.js';
import { connectAgent, eventually } from '../support/agent-client.js';
import { pushBody } from '../support/fixtures.js';
import { testRedisPrefix } from '../support/isolation.js';
import { startRedisServer, type RedisServer } from '../support/replica-process.js';
import { readMetric } from './support.js';

async function post(gw: TestGateway, path: string): Promise<string> {
  const res = await gw.postWebhook(pushBody({ path, visibility: 0, projectId: 4200 }));
  expect(res.status).toBe(202);
  return ((await res.json()) as { eventId: string }).eventId;
}

/**
 * A second gateway on the same Postgres schema whose doorbells go to another Redis prefix:
 * the first gateway never hears of what it stores.
 */
async function deafPeer(of: TestGateway) {
  const prefix = testRedisPrefix();
  const gw = await startGateway({ peer: of, env: { KASGATE_REDIS_PREFIX: prefix.prefix } });
  return {
    gw,
    async close() {
      await gw.close();
      await prefix.clean();
    },
  };
}

describe('events whose doorbell never reached this replica', () => {
  test('are dispatched by the periodic sweep', async () => {
    const gw = await startGateway({ env: { KASGATE_SWEEP_SECONDS: '1' } });
    const other = await deafPeer(gw);
    try {
      const info = await gw.createAgent('swept', 'cu/swept');
      const agent = await connectAgent(gw.wsUrl, info.token);
      await agent.subscribe(['cu/swept']);
      const before = await readMetric(gw.url, 'kasgate_doorbell_gaps_recovered_total');
      const id = await post(other.gw, 'cu/swept');
      await agent.waitFor((f) => f.type === 'push' && f.eventId === id, 5000);
      expect(await readMetric(gw.url, 'kasgate_doorbell_gaps_recovered_total')).toBeGreaterThan(before);
      await agent.close();
    } finally {
      await other.close();
      await gw.close();
    }
  });

  test('are read from the log first when the next doorbell shows the gap, keeping the order', async () => {
    const gw = await startGateway({ env: { KASGATE_SWEEP_SECONDS: '3600' } });
    const other = await deafPeer(gw);
    try {
      const info = await gw.createAgent('gapped', 'cu/gap');
      const agent = await connectAgent(gw.wsUrl, info.token);
      await agent.subscribe(['cu/gap']);
      expect(await readMetric(gw.url, 'kasgate_doorbell_gaps_recovered_total')).toBe(0);
      const missed = await post(other.gw, 'cu/gap');
      // No sweep for an hour and no doorbell: nothing may arrive yet.
      await expect(agent.waitFor((f) => f.type === 'push', 300)).rejects.toThrow(/timed out/);
      const next = await post(gw, 'cu/gap');
      await agent.waitFor((f) => f.type === 'push' && f.eventId === next);
      expect(agent.pushes().map((p) => p.eventId)).toEqual([missed, next]);
      expect(await readMetric(gw.url, 'kasgate_doorbell_gaps_recovered_total')).toBeGreaterThanOrEqual(1);
      await agent.close();
    } finally {
      await other.close();
      await gw.close();
    }
  });

  test('a healthy doorbell recovers nothing', async () => {
    const gw = await startGateway({ env: { KASGATE_SWEEP_SECONDS: '1' } });
    try {
      const info = await gw.createAgent('healthy', 'cu/healthy');
      const agent = await connectAgent(gw.wsUrl, info.token);
      await agent.subscribe(['cu/healthy']);
      const ids: string[] = [];
      for (let i = 0; i < 10; i++) ids.push(await post(gw, 'cu/healthy'));
      await agent.waitFor((f) => f.type === 'push' && f.eventId === ids.at(-1));
      await gw.ctx.dispatcher.sweep();
      expect(agent.pushes().map((p) => p.eventId)).toEqual(ids);
      expect(await readMetric(gw.url, 'kasgate_doorbell_gaps_recovered_total')).toBe(0);
      await agent.close();
    } finally {
      await gw.close();
    }
  });
});

describe('a Redis of our own, killed and restarted', () => {
  let redis: RedisServer;
  let gw: TestGateway;
  beforeAll(async () => {
    redis = await startRedisServer();
    // No sweep within the test: only the reconnect can explain a recovery.
    gw = await startGateway({ env: { REDIS_URL: redis.url, KASGATE_SWEEP_SECONDS: '3600', KASGATE_HEARTBEAT_SECONDS: '1' } });
  });
  afterAll(async () => {
    await gw?.close();
    await redis?.close();
  });

  test('while Redis is down webhooks get 202, local agents still get them and /readyz stays 200; on its return presence comes back', { timeout: 30_000 }, async () => {
    const info = await gw.createAgent('outage', 'ro/app');
    const before = await connectAgent(gw.wsUrl, info.token);
    await before.subscribe(['ro/app']);
    await eventually(() => gw.admin('GET', `/agents/${info.id}/connections`), (r) => r.body.connections.length === 1);

    await redis.kill();
    const during = await post(gw, 'ro/app');
    const ready = await fetch(`${gw.url}/readyz`);
    const readiness = (await ready.json()) as { status: string; checks: Record<string, string> };
    expect(ready.status).toBe(200);
    expect(readiness.status).toBe('ready');
    expect(readiness.checks.postgres).toBe('ok');
    expect(readiness.checks.redis).not.toBe('ok');
    const listing = await gw.admin('GET', '/connections');
    expect(listing.status).toBe(503);
    expect(listing.body.error.code).toBe('presence_unavailable');
    // A connection made while Redis is down: its presence write fails and must be retried.
    const whileDown = await connectAgent(gw.wsUrl, info.token);
    await whileDown.subscribe(['ro/app']);

    // The replica that took the webhook delivers to its own agents without Redis.
    await before.waitFor((f) => f.type === 'push' && f.eventId === during, 10_000);

    await redis.start();
    const connections = await eventually(
      () => gw.admin('GET', `/agents/${info.id}/connections`),
      (r) => r.status === 200 && r.body.connections.length === 2,
      10_000,
    );
    expect(connections.body.connections.every((c: { projects: string[] }) => c.projects.includes('ro/app'))).toBe(true);
    // The doorbell works again.
    const after = await post(gw, 'ro/app');
    await whileDown.waitFor((f) => f.type === 'push' && f.eventId === after);
    await before.waitFor((f) => f.type === 'push' && f.eventId === after);
    expect(before.pushes().map((p) => p.eventId)).toEqual([during, after]);
    await before.close();
    await whileDown.close();
  });

  test('a dropped subscriber connection is recovered on reconnect', async () => {
    const info = await gw.createAgent('dropped', 'ro/drop');
    const agent = await connectAgent(gw.wsUrl, info.token);
    await agent.subscribe(['ro/drop']);
    const admin = new Redis(redis.url);
    try {
      await admin.call('CLIENT', 'KILL', 'TYPE', 'pubsub');
      const ids = [await post(gw, 'ro/drop'), await post(gw, 'ro/drop')];
      await agent.waitFor((f) => f.type === 'push' && f.eventId === ids[1], 10_000);
      expect(agent.pushes().map((p) => p.eventId)).toEqual(ids);
    } finally {
      admin.disconnect();
      await agent.close();
    }
  });
});
