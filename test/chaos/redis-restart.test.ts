/** Chaos (b): the deployment's Redis is killed and restarted empty mid-stream. */
import { afterAll, beforeAll, expect, test } from 'vitest';
import { eventually } from '../support/agent-client.js';
import { startRedisServer, type RedisServer } from '../support/replica-process.js';
import { ChaosRig, NO_LOSS } from './harness.js';

let redis: RedisServer;
let rig: ChaosRig;
beforeAll(async () => {
  redis = await startRedisServer();
  rig = new ChaosRig({ name: 'redis', seed: 2, redisUrl: redis.url });
});
afterAll(async () => {
  await rig?.close();
  await redis?.close();
});

test('Redis killed and restarted mid-stream loses no accepted event', { timeout: 60_000 }, async () => {
  await rig.start();
  let outageMs = 0;
  await rig.stream({
    pushes: 300,
    lanes: 4,
    paceMs: 80,
    at: [
      {
        accepted: 80,
        run: async () => {
          const started = Date.now();
          await redis.kill();
          // Stay down for a good part of the stream: webhooks must keep getting 202 meanwhile.
          const acceptedBefore = rig.accepted.size;
          await new Promise((r) => setTimeout(r, 2500));
          expect(rig.accepted.size).toBeGreaterThan(acceptedBefore);
          await redis.start();
          outageMs = Date.now() - started;
        },
      },
    ],
  });
  console.log(`chaos redis: down for ${outageMs} ms`);
  const report = await rig.verify('redis restart');
  expect(report).toMatchObject(NO_LOSS);
  // The agents' sockets never depended on Redis.
  expect(report.reconnects).toBe(0);
  // Presence was lost with Redis and is written again by the heartbeat.
  await eventually(
    () => rig.deployment.admin(rig.url(0), 'GET', '/connections'),
    (r) => r.body.connections.length === rig.agents.length,
    10_000,
  );
});
