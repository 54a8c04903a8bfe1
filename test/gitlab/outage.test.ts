/**
 * Postgres unreachable: the gateway talks to its store through a TCP proxy that the test cuts or
 * black-holes. Every webhook must get its 503 (with the error body) within 2 s, never hang, and
 * the same gateway must store webhooks again once the proxy is back.
 */
import { afterEach, describe, expect, test } from 'vitest';
import type pg from 'pg';
import { eventually } from '../support/agent-client.js';
import { startGateway, type TestGateway } from '../support/gateway.js';
import { databaseUrl } from '../support/isolation.js';
import { startTcpProxy, type TcpProxy } from '../support/tcp-proxy.js';
import { FIXTURE_CASES, newKey, postRaw, readJson } from './support/webhooks.js';

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
  // Migrations run at start, through the proxy: it is cut only afterwards.
  const gw = await startGateway({ env: { DATABASE_URL: viaProxy.toString() } });
  cleanup.push(() => proxy.close(), () => gw.close());
  return { gw, proxy };
}

/**
 * The embedded store is served to `pg` over a loopback socket inside the process; the test routes
 * the pool's new connections through the proxy and drops the direct ones, so that the embedded
 * gateway can lose its store too.
 */
async function embeddedGatewayBehindProxy(): Promise<{ gw: TestGateway; proxy: TcpProxy }> {
  const gw = await startGateway({ embedded: true });
  const options = (gw.ctx.pool as pg.Pool & { options: { host: string; port: number } }).options;
  const proxy = await startTcpProxy(String(options.host), Number(options.port));
  cleanup.push(() => proxy.close(), () => gw.close());
  options.host = '127.0.0.1';
  options.port = proxy.port;
  // pg-pool has no public way to drop its clients: end the direct ones as they become idle
  // (the pool itself replaces what breaks) until every connection goes through the proxy.
  type Client = { port: number; connection: { stream: { destroy(): void } } };
  // oxlint-disable-next-line no-underscore-dangle
  const clients = () => (gw.ctx.pool as unknown as { _clients: Client[] })._clients;
  // oxlint-disable-next-line no-underscore-dangle
  const idle = () => (gw.ctx.pool as unknown as { _idle: { client: Client }[] })._idle.map((i) => i.client);
  await eventually(
    () => {
      for (const client of idle()) if (client.port !== proxy.port) client.connection.stream.destroy();
      return clients().filter((c) => c.port !== proxy.port).length;
    },
    (direct) => direct === 0,
  );
  return { gw, proxy };
}

const headers = (gw: TestGateway, event: string, key: string) => ({
  'content-type': 'application/json',
  'x-gitlab-token': gw.webhookSecret,
  'x-gitlab-event': event,
  'idempotency-key': key,
});

/** Every fixture at once; each answer with how long it took. */
async function deliverAll(gw: TestGateway, keys: string[]) {
  return Promise.all(
    FIXTURE_CASES.map(async (fx, i) => {
      const started = performance.now();
      const res = await postRaw(gw, fx.raw, headers(gw, fx.event, keys[i]!));
      return { fixture: fx.name, status: res.status, retryAfter: res.headers.get('retry-after'), body: await readJson(res), ms: performance.now() - started };
    }),
  );
}

/** One webhook answer, as far as the contract cares. */
const summary = (a: Awaited<ReturnType<typeof deliverAll>>[number]) => ({
  status: a.status,
  retryAfter: a.retryAfter,
  code: a.body?.error?.code,
  hasMessage: typeof a.body?.error?.message === 'string',
});

/** Breaks the store, delivers every fixture twice while it is away, restores it, delivers again. */
async function outageAndRecovery(gw: TestGateway, proxy: TcpProxy, breakIt: () => Promise<void> | void) {
  const warm = await deliverAll(gw, FIXTURE_CASES.map(() => newKey()));

  await breakIt();
  const keys = FIXTURE_CASES.map(() => newKey());
  // First round: the pool's open connections fail; second: new connections fail to open.
  const down = [...(await deliverAll(gw, keys)), ...(await deliverAll(gw, keys))];
  const healthz = (await fetch(`${gw.url}/healthz`)).status;

  await proxy.restore();
  // GitLab retries the deliveries that got a 503: each is stored now, once.
  const retried = await eventually(
    () => deliverAll(gw, keys),
    (answers) => answers.every((a) => a.status === 202),
    10_000,
  );
  const again = await deliverAll(gw, keys);
  return {
    warm: warm.map((a) => a.status),
    down: down.map(summary),
    slowestDownMs: Math.max(...down.map((a) => a.ms)),
    healthz,
    redelivered: again.map((a) => a.body),
    expectedRedelivered: retried.map((a) => ({ ...a.body, duplicate: true })),
  };
}

/** What the contract asks of a run: stored before, 503s with the error body while away, stored after. */
function contractKept(run: Awaited<ReturnType<typeof outageAndRecovery>>) {
  return {
    warm: [202, 202, 202],
    down: Array.from({ length: 6 }, () => ({ status: 503, retryAfter: expect.stringMatching(/^\d+$/), code: 'store_unavailable', hasMessage: true })),
    healthz: 200,
    redelivered: run.expectedRedelivered,
  };
}

const outages = [
  ['cut (connections dropped, port refusing)', (proxy: TcpProxy) => proxy.cut()],
  ['black hole (connections hang, nothing answers)', (proxy: TcpProxy) => proxy.blackhole()],
] as const;

describe.each([
  ['Postgres behind a proxy', gatewayBehindProxy],
  ['the embedded store', embeddedGatewayBehindProxy],
] as const)('%s unreachable', (_store, setUp) => {
  test.each(outages)('%s: 503 within 2 s, then 202 again after restore', async (_outage, breakIt) => {
    const { gw, proxy } = await setUp();
    const run = await outageAndRecovery(gw, proxy, () => breakIt(proxy));
    expect(run).toMatchObject(contractKept(run));
    expect(run.slowestDownMs).toBeLessThan(CONTRACT_MS);
  });
});
