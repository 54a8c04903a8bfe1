/**
 * Graceful drain: SIGTERM on a replica running as its own process. It refuses new agents, closes
 * its agents with 1012 spread over the window, exits 0 within 10 s; the agents move to the other
 * replica and resume from their last event, losing nothing.
 */
import { afterAll, beforeAll, expect, test } from 'vitest';
import { startGateway, type TestGateway } from '../support/gateway.js';
import { connectAgent, eventually } from '../support/agent-client.js';
import { pushBody } from '../support/fixtures.js';
import { startReplicaProcess, type ReplicaProcess } from '../support/replica-process.js';
import { startResumingAgent, type ResumingAgent } from '../support/resuming-agent.js';
import { inLanes } from './support.js';

const AGENTS = 6;
const DRAIN_WINDOW_MS = 5000;

let b: TestGateway;
let a: ReplicaProcess | undefined;
const agents: ResumingAgent[] = [];

beforeAll(async () => {
  b = await startGateway({ env: { KASGATE_SWEEP_SECONDS: '1' } });
  a = await startReplicaProcess({ ...b.env, KASGATE_DRAIN_SECONDS: String(DRAIN_WINDOW_MS / 1000) }, { name: 'drain-a' });
});
afterAll(async () => {
  await Promise.all(agents.map((agent) => agent.stop()));
  a?.kill('SIGKILL');
  await a?.exited;
  await b?.close();
});

test('SIGTERM drains agents to the other replica with 1012, spread out, and nothing is lost', { timeout: 45_000 }, async () => {
  const replicaA = a!;
  const token = (await b.createAgent('drainee-probe', 'dr/app')).token;
  for (let i = 0; i < AGENTS; i++) {
    const { token: agentToken } = await b.createAgent(`drainee-${i}`, 'dr/app');
    agents.push(startResumingAgent({ name: `drainee-${i}`, token: agentToken, urls: [replicaA.wsUrl, b.wsUrl], projects: ['dr/app'], startAfter: '0' }));
  }
  await Promise.all(agents.map((agent) => agent.waitSubscribed()));
  expect(agents.every((agent) => agent.connectedTo === replicaA.wsUrl)).toBe(true);

  // A stream of pushes through the surviving replica, before, during and after the drain.
  const accepted: string[] = [];
  let signalled = false;
  const stream = inLanes(150, 3, async (i) => {
    const res = await b.postWebhook(pushBody({ path: 'dr/app', visibility: 0, projectId: 4400, after: String(i).padStart(40, '0') }));
    expect(res.status).toBe(202);
    accepted.push(((await res.json()) as { eventId: string }).eventId);
    if (accepted.length === 30) {
      signalled = true;
      replicaA.kill('SIGTERM');
    }
  });
  await eventually(() => signalled, Boolean, 20_000);

  // New agents are refused while it drains.
  await replicaA.waitForLog(/draining agent connections/);
  const refused = await connectAgent(replicaA.wsUrl, token).then(
    () => undefined,
    (err: { status?: number }) => err.status,
  );
  expect(refused).toBe(503);
  // ...and readiness takes it out of the load balancer's rotation.
  const readiness = await fetch(`${replicaA.url}/readyz`);
  expect(readiness.status).toBe(503);
  expect(await readiness.json()).toMatchObject({ status: 'not_ready', checks: { replica: 'draining' } });

  const exit = await replicaA.exited;
  await stream;
  console.log(`drain: replica exited with ${exit.code} ${exit.afterSignalMs} ms after SIGTERM`);
  expect(exit.code).toBe(0);
  expect(exit.afterSignalMs!).toBeLessThan(10_000);

  const closes = agents.map((agent) => agent.closes.find((c) => c.url === replicaA.wsUrl)!);
  expect(closes.map((c) => c.code)).toEqual(Array(AGENTS).fill(1012));
  const times = closes.map((c) => c.at).sort((x, y) => x - y);
  const spread = times.at(-1)! - times[0]!;
  console.log(`drain: ${AGENTS} sockets closed over ${spread} ms (window ${DRAIN_WINDOW_MS} ms)`);
  // Evenly spaced over the window would be 5/6 of it; all at once would be ~0.
  expect(spread).toBeGreaterThan(DRAIN_WINDOW_MS / 2);

  // Everyone is back, on the other replica; then a few more pushes after the drain.
  await Promise.all(agents.map((agent) => agent.waitSubscribed(10_000, 1)));
  for (let i = 0; i < 3; i++) {
    const res = await b.postWebhook(pushBody({ path: 'dr/app', visibility: 0, projectId: 4400 }));
    accepted.push(((await res.json()) as { eventId: string }).eventId);
  }
  await Promise.all(agents.map((agent) => agent.waitForEvents(accepted, 15_000)));
  for (const agent of agents) {
    expect(agent.connectedTo).toBe(b.wsUrl);
    expect(agent.outOfOrder).toBe(0);
    expect(agent.resyncs).toBe(0);
  }
  const duplicates = agents.reduce((n, agent) => n + agent.duplicates, 0);
  console.log(`drain: ${accepted.length} events × ${AGENTS} agents, 0 lost, ${duplicates} duplicates`);
});
