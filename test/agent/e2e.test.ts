/**
 * End to end: a real gateway (Postgres + Redis), the agent, the test API server and the test
 * Flux receiver. A GitLab push webhook must make Flux reconcile exactly the GitRepository it can
 * affect, once: by annotation (the default), also for pushes made while the agent was cut off
 * across a gateway restart; and through its Receiver in receiver mode.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { pushBody } from '../support/fixtures.js';
import { startGateway, type TestGateway } from '../support/gateway.js';
import { createHarness, type Harness } from './support/harness.js';
import { TcpRelay } from './support/tcp-relay.js';
import { settle, waitFor } from './support/wait.js';

const PROJECT = 'mike/diaspora';
const MAIN_RECEIVER = 'kasgate-diaspora';
const DEV_RECEIVER = 'kasgate-diaspora-dev';

let gateway: TestGateway;
let h: Harness;
let relay: TcpRelay;

beforeEach(async () => {
  gateway = await startGateway();
  h = await createHarness();
  relay = await new TcpRelay({ host: '127.0.0.1', port: Number(new URL(gateway.url).port) }).start();
  h.kube.putGitRepository('apps', 'diaspora', { url: 'https://gitlab.example.com/mike/diaspora.git', ref: { branch: 'main' } });
  h.kube.putGitRepository('apps', 'diaspora-dev', { url: 'ssh://git@gitlab.example.com/Mike/Diaspora.git', ref: { branch: 'dev' } });
});

afterEach(async () => {
  await h?.close();
  await relay?.close();
  await gateway?.close();
});

const sha = (n: number): string => n.toString(16).padStart(40, '0');

/** Posts a push of the fixture project as a private project: it flows only because it is the agent's configuration project. */
async function push(ref: string, n: number): Promise<string> {
  const response = await gateway.postWebhook(pushBody({ path: PROJECT, visibility: 0, ref, after: sha(n) }));
  expect(response.status).toBe(202);
  return ((await response.json()) as { eventId: string }).eventId;
}

async function connections(agentId: string): Promise<{ projects: string[] }[]> {
  const { status, body } = await gateway.admin<{ connections: { projects: string[] }[] }>('GET', `/agents/${agentId}/connections`);
  return status === 200 ? body.connections : [];
}

async function waitSubscribed(agentId: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!(await connections(agentId)).some((c) => c.projects.map((p) => p.toLowerCase()).includes(PROJECT))) {
    if (Date.now() > deadline) throw new Error('the agent did not subscribe to its project within 10 s');
    await settle(50);
  }
}

async function waitDisconnected(agentId: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while ((await connections(agentId)).length > 0) {
    if (Date.now() > deadline) throw new Error('the gateway still lists the agent as connected after 10 s');
    await settle(50);
  }
}

const eventIdsOf = (name: string): string[] =>
  h.receiver.callsTo('apps', name).map((c) => (JSON.parse(c.body) as { eventId: string }).eventId);

/** Successful annotations of each GitRepository, as `name` → count. */
const annotations = (): Record<string, number> => {
  const counts: Record<string, number> = {};
  for (const p of h.kube.sourcePatches) if (p.failed === undefined) counts[p.name] = (counts[p.name] ?? 0) + 1;
  return counts;
};

describe('gateway + agent + Flux', () => {
  it('annotates exactly the GitRepository on the pushed branch, once (annotate mode, the default)', async () => {
    const agent = await gateway.createAgent('e2e-annotate', PROJECT);
    await h.startAgent({ gatewayUrl: gateway.url, agentToken: agent.token });
    await waitSubscribed(agent.id);

    await push('refs/heads/main', 1);
    await waitFor(() => (annotations()['diaspora'] ?? 0) >= 1, 10_000, 'the annotation');
    await settle(500);
    expect(annotations()).toEqual({ diaspora: 1 });
    expect(h.kube.requestedAt('GitRepository', 'apps', 'diaspora')).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{9}Z$/);

    // A branch no GitRepository follows annotates nothing; the other branch only its own.
    await push('refs/heads/feature', 2);
    await push('refs/heads/dev', 3);
    await waitFor(() => (annotations()['diaspora-dev'] ?? 0) >= 1, 10_000, 'the dev annotation');
    await settle(500);
    expect(annotations()).toEqual({ diaspora: 1, 'diaspora-dev': 1 });
    expect(h.kube.applies).toEqual([]);
    expect(h.receiver.calls).toEqual([]);
  });

  it('calls exactly the Receiver of the GitRepository on the pushed branch, once (receiver mode)', async () => {
    const agent = await gateway.createAgent('e2e-cluster', PROJECT, { flux: { webhookReceiverUrl: h.receiver.url } });
    // The receiver URL in the agent's stored config (sent in hello) wins over the agent's own setting.
    await h.startAgent({
      gatewayUrl: gateway.url,
      agentToken: agent.token,
      triggerMode: 'receiver',
      webhookReceiverUrl: 'http://127.0.0.1:9/unused',
    });
    await waitSubscribed(agent.id);

    const mainEvent = await push('refs/heads/main', 1);
    await waitFor(() => h.receiver.calls.length >= 1, 10_000, 'the Receiver call');
    await settle(500);
    expect(h.receiver.calls.map((c) => c.name)).toEqual([MAIN_RECEIVER]);
    expect(h.receiver.calls[0]?.resources).toEqual(['GitRepository/diaspora']);
    expect(eventIdsOf(MAIN_RECEIVER)).toEqual([mainEvent]);
    expect(h.receiver.rejected).toEqual([]);

    // A branch no GitRepository follows triggers nothing; the other branch triggers only its own.
    await push('refs/heads/feature', 2);
    const devEvent = await push('refs/heads/dev', 3);
    await waitFor(() => h.receiver.calls.length >= 2, 10_000, 'the dev Receiver call');
    await settle(500);
    expect(eventIdsOf(MAIN_RECEIVER)).toEqual([mainEvent]);
    expect(eventIdsOf(DEV_RECEIVER)).toEqual([devEvent]);
  });

  it('delivers pushes made while the agent was cut off, across a gateway restart, once each', async () => {
    const agent = await gateway.createAgent('e2e-resume', PROJECT);
    await h.startAgent({ gatewayUrl: relay.url, agentToken: agent.token, reconnect: { minMs: 100, maxMs: 300 } });
    await waitSubscribed(agent.id);
    await push('refs/heads/main', 10);
    await waitFor(() => annotations()['diaspora'] === 1, 10_000, 'the first annotation');

    relay.block();
    await waitDisconnected(agent.id);
    await push('refs/heads/main', 11);
    await gateway.restart();
    await push('refs/heads/dev', 12);
    await settle(300);
    expect(relay.refusedWhileBlocked).toBeGreaterThan(0);
    expect(annotations()).toEqual({ diaspora: 1 });

    relay.unblock();
    await waitFor(() => annotations()['diaspora-dev'] === 1 && annotations()['diaspora'] === 2, 10_000, 'the replayed annotations');
    await settle(700);
    expect(annotations()).toEqual({ diaspora: 2, 'diaspora-dev': 1 });

    // A restart with the agent connected: it reconnects by itself (1012) and stays live.
    await gateway.restart();
    await waitSubscribed(agent.id);
    await push('refs/heads/main', 13);
    await waitFor(() => annotations()['diaspora'] === 3, 10_000, 'the annotation after the second restart');
    await settle(500);
    expect(annotations()).toEqual({ diaspora: 3, 'diaspora-dev': 1 });
    expect(h.kube.sourcePatches.every((p) => p.failed === undefined)).toBe(true);
  });
});
