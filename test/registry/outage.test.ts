/**
 * Postgres unreachable while a registry notification arrives: 503 (with the error body and
 * Retry-After) within 2 s, never a hang, whether the store refuses or black-holes; the same
 * notification is stored once the store is back (the registry retries what got a non-2xx).
 */
import { afterEach, expect, test } from 'vitest';
import { eventually } from '../support/agent-client.js';
import { startGateway, type TestGateway } from '../support/gateway.js';
import { databaseUrl } from '../support/isolation.js';
import { startTcpProxy, type TcpProxy } from '../support/tcp-proxy.js';
import { push } from '../fanout/support/helpers.js';
import { readJson } from '../gitlab/support/webhooks.js';
import { envelope, postRegistry, registryEnv } from './support.js';

const CONTRACT_MS = 2000;

let cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const step of cleanup.toReversed()) await step();
  cleanup = [];
});

async function gatewayBehindProxy(): Promise<{ gw: TestGateway; proxy: TcpProxy }> {
  const direct = new URL(databaseUrl());
  const proxy = await startTcpProxy(direct.hostname, Number(direct.port || 5432));
  const viaProxy = new URL(direct);
  viaProxy.hostname = '127.0.0.1';
  viaProxy.port = String(proxy.port);
  const gw = await startGateway({ env: { ...registryEnv, DATABASE_URL: viaProxy.toString() } });
  cleanup.push(() => proxy.close(), () => gw.close());
  return { gw, proxy };
}

test.each([
  ['cut', (proxy: TcpProxy) => proxy.cut()],
  ['black hole', (proxy: TcpProxy) => proxy.blackhole()],
] as const)('store %s: 503 within 2 s, then 202 for the same notification', async (_label, breakIt) => {
  const { gw, proxy } = await gatewayBehindProxy();
  await push(gw, 'outage/registry', 20);
  const body = envelope({ repository: 'outage/registry/manifests', tag: 'v1' });

  breakIt(proxy);
  const answers = [];
  for (let i = 0; i < 2; i++) {
    const started = performance.now();
    const res = await postRegistry(gw, body);
    answers.push({ status: res.status, retryAfter: res.headers.get('retry-after'), code: (await readJson(res)).error?.code, ms: performance.now() - started });
  }
  for (const answer of answers) {
    expect(answer).toMatchObject({ status: 503, retryAfter: expect.stringMatching(/^\d+$/), code: 'store_unavailable' });
    expect(answer.ms).toBeLessThan(CONTRACT_MS);
  }

  proxy.restore();
  const stored = await eventually(
    () => postRegistry(gw, body).then(async (res) => ({ status: res.status, body: await readJson(res) })),
    (r) => r.status === 202,
    10_000,
  );
  const again = await postRegistry(gw, body);
  expect(await readJson(again)).toEqual({ ...stored.body, duplicate: true });
});
