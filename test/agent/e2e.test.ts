/**
 * End to end: a real gateway (Postgres + Redis), the agent, the test API server and the test
 * Flux receiver. A GitLab push webhook must call the Receiver of exactly the GitRepository it
 * can affect, once, also for pushes made while the agent was cut off across a gateway restart.
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
  h.kube.putGitRepository('apps', 'diaspora-dev', { url: 'git@gitlab.example.com:Mike/Diaspora.git', ref: { branch: 'dev' } });
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

describe('gateway + agent + Flux receiver', () => {
  it('triggers exactly the Receiver of the GitRepository on the pushed branch, once', async () => {
    const agent = await gateway.createAgent('e2e-cluster', PROJECT, { flux: { webhookReceiverUrl: h.receiver.url } });
    // The receiver URL in the agent's stored config (sent in hello) wins over the agent's own setting.
    await h.startAgent({ gatewayUrl: gateway.url, agentToken: agent.token, webhookReceiverUrl: 'http://127.0.0.1:9/unused' });
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
    const first = await push('refs/heads/main', 10);
    await waitFor(() => eventIdsOf(MAIN_RECEIVER).length === 1, 10_000, 'the first call');

    relay.block();
    await waitDisconnected(agent.id);
    const whileCutOff = await push('refs/heads/main', 11);
    await gateway.restart();
    const afterRestart = await push('refs/heads/dev', 12);
    await settle(300);
    expect(relay.refusedWhileBlocked).toBeGreaterThan(0);
    expect(h.receiver.calls).toHaveLength(1);

    relay.unblock();
    await waitFor(() => h.receiver.calls.length >= 3, 10_000, 'the replayed calls');
    await settle(700);
    expect(eventIdsOf(MAIN_RECEIVER)).toEqual([first, whileCutOff]);
    expect(eventIdsOf(DEV_RECEIVER)).toEqual([afterRestart]);

    // A restart with the agent connected: it reconnects by itself (1012) and stays live.
    await gateway.restart();
    await waitSubscribed(agent.id);
    const live = await push('refs/heads/main', 13);
    await waitFor(() => eventIdsOf(MAIN_RECEIVER).length === 3, 10_000, 'the call after the second restart');
    await settle(500);
    expect(eventIdsOf(MAIN_RECEIVER)).toEqual([first, whileCutOff, live]);
    expect(eventIdsOf(DEV_RECEIVER)).toEqual([afterRestart]);
    expect(h.receiver.rejected).toEqual([]);
  });
});
