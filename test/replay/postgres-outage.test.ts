/**
 * Postgres unreachable (a TCP proxy in front of the real server, cut or blackholed): webhooks get
 * 503 within 2 s, connected agents stay connected, and everything recovers by itself.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startGateway, type TestGateway } from '../support/gateway.js';
import { connectAgent, eventually, type TestAgent } from '../support/agent-client.js';
import { pushBody } from '../support/fixtures.js';
import { databaseUrl } from '../support/isolation.js';
import { startTcpProxy, type TcpProxy } from '../support/tcp-proxy.js';

let proxy: TcpProxy;
let gw: TestGateway;
let agent: TestAgent;

beforeAll(async () => {
  const real = new URL(databaseUrl());
  proxy = await startTcpProxy(real.hostname, Number(real.port || 5432));
  const proxied = new URL(real);
  proxied.hostname = '127.0.0.1';
  proxied.port = String(proxy.port);
  gw = await startGateway({ env: { DATABASE_URL: proxied.toString(), KASGATE_HEARTBEAT_SECONDS: '1', KASGATE_SWEEP_SECONDS: '1' } });
  const info = await gw.createAgent('survivor', 'pg/app');
  agent = await connectAgent(gw.wsUrl, info.token);
  await agent.subscribe(['pg/app']);
});
afterAll(async () => {
  await agent?.close();
  await gw?.close();
  await proxy?.close();
});

const post = (key: string) => gw.postWebhook(pushBody({ path: 'pg/app', visibility: 0, projectId: 4300 }), { 'idempotency-key': key });

async function timed(key: string): Promise<{ status: number; ms: number; code?: string }> {
  const started = Date.now();
  const res = await post(key);
  const body = (await res.json()) as { error?: { code: string } };
  return { status: res.status, ms: Date.now() - started, code: body.error?.code };
}

/** True if the agent's socket stayed open for the whole period. */
async function staysOpen(a: TestAgent, ms: number): Promise<boolean> {
  const outcome = await Promise.race([a.closed.then(() => 'closed'), new Promise((r) => setTimeout(() => r('open'), ms))]);
  return outcome === 'open';
}

/** GitLab retries a failed delivery with the same Idempotency-Key until it gets a 2xx. */
async function retryUntilAccepted(key: string): Promise<string> {
  const res = await eventually(() => post(key), (r) => r.status === 202, 20_000);
  return ((await res.json()) as { eventId: string }).eventId;
}

describe.each([
  ['blackholed (packets dropped)', () => proxy.blackhole()],
  ['cut (connections reset)', () => proxy.cut()],
])('Postgres %s', (_name, breakIt) => {
  test('webhooks get 503 within 2 s, the agent stays connected, and all recovers when it returns', { timeout: 45_000 }, async () => {
    const tag = `${_name.split(' ')[0]}-${Date.now()}`;
    const first = await retryUntilAccepted(`${tag}-0`);
    await agent.waitFor((f) => f.type === 'push' && f.eventId === first);

    breakIt();
    const answers = await Promise.all([1, 2, 3, 4, 5].map((i) => timed(`${tag}-${i}`)));
    console.log(`postgres ${_name}: webhook answers ${answers.map((a) => `${a.status} in ${a.ms} ms`).join(', ')}`);
    for (const answer of answers) {
      expect(answer.status).toBe(503);
      expect(answer.code).toBe('store_unavailable');
      expect(answer.ms).toBeLessThan(2000);
    }
    const ready = await fetch(`${gw.url}/readyz`, { signal: AbortSignal.timeout(5000) });
    expect(ready.status).toBe(503);
    // Three heartbeat intervals: a socket the outage broke would have been closed by now.
    expect(await staysOpen(agent, 3000)).toBe(true);

    proxy.restore();
    const retried: string[] = [];
    for (let i = 1; i <= 5; i++) retried.push(await retryUntilAccepted(`${tag}-${i}`));
    await agent.waitFor((f) => f.type === 'push' && f.eventId === retried.at(-1), 10_000);
    const seen = agent.pushes().map((p) => p.eventId);
    expect(seen.slice(seen.indexOf(first))).toEqual([first, ...retried]);
    await eventually(() => fetch(`${gw.url}/readyz`).then((r) => r.status), (s) => s === 200);
  });
});
