/** /readyz says what is wrong with a dependency in words: where it is, what failed, what degrades. */
import { afterEach, expect, test } from 'vitest';
import { eventually } from '../support/agent-client.js';
import { startGateway, type TestGateway } from '../support/gateway.js';
import { databaseUrl } from '../support/isolation.js';
import { startTcpProxy } from '../support/tcp-proxy.js';
import { startRedisServer } from '../support/replica-process.js';

let cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const step of cleanup.toReversed()) await step();
  cleanup = [];
});

const readyz = async (gw: TestGateway) => {
  const res = await fetch(`${gw.url}/readyz`);
  return { status: res.status, body: (await res.json()) as { status: string; checks: Record<string, string> } };
};

test('Postgres gone: 503, naming the address (no credentials) and the failure', async () => {
  const direct = new URL(databaseUrl());
  const proxy = await startTcpProxy(direct.hostname, Number(direct.port || 5432));
  const viaProxy = new URL(direct);
  viaProxy.hostname = '127.0.0.1';
  viaProxy.port = String(proxy.port);
  viaProxy.username = 'postgres';
  const gw = await startGateway({ env: { DATABASE_URL: viaProxy.toString() } });
  cleanup.push(() => gw.close());
  expect((await readyz(gw)).body.checks.postgres).toBe('ok');

  await proxy.close(); // nothing listens there any more
  const expected = `unreachable at postgres://127.0.0.1:${proxy.port}${direct.pathname}: connection refused; webhooks are answered 503 (senders retry) until it is back`;
  // The first probe may still ride a connection that was open; the next ones connect anew.
  const answer = await eventually(() => readyz(gw), (r) => r.body.checks.postgres === expected);
  expect(answer.status).toBe(503);
  expect(answer.body.status).toBe('not_ready');
});

test('Redis away: still ready, saying what degrades; ok again once it is back', async () => {
  const redis = await startRedisServer();
  cleanup.push(() => redis.close());
  const gw = await startGateway({ env: { REDIS_URL: redis.url.replace('redis://', 'redis://:s3cret@') } });
  cleanup.push(() => gw.close());
  await eventually(() => readyz(gw), (r) => r.body.checks.redis === 'ok');

  await redis.kill();
  const answer = await eventually(() => readyz(gw), (r) => r.body.checks.redis !== 'ok');
  expect(answer).toEqual({
    status: 200,
    body: {
      status: 'ready',
      checks: {
        postgres: 'ok',
        redis: expect.stringMatching(
          new RegExp(`^unreachable at redis://127\\.0\\.0\\.1:${redis.port}: (connection refused|connection reset|connection lost); cross-replica fan-out degraded to the periodic sweep \\(every 10 s\\)$`),
        ),
      },
    },
  });
  expect(JSON.stringify(answer.body)).not.toContain('s3cret');
  await redis.start();
  await eventually(() => readyz(gw), (r) => r.body.checks.redis === 'ok', 10_000);
});
