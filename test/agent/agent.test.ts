/**
 * The agent in-process against the test API server, the test Flux receiver, and a scripted
 * kasgate.v1 peer over a real WebSocket.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { TokenRevokedError } from '../../src/agent/gateway-client.js';
import type { PushFrame } from '../../src/protocol/kasgate-v1.js';
import { createHarness, type Harness } from './support/harness.js';
import { ProtocolPeer } from './support/protocol-peer.js';
import { settle, waitFor } from './support/wait.js';

const TOKEN = 'kgagent_test-token-0123456789abcdef';

function push(eventId: string, path: string, ref: string, defaultBranch: string | null = 'main'): PushFrame {
  return {
    type: 'push',
    eventId,
    project: { id: 42, path, defaultBranch },
    ref,
    before: '95790bf891e76fee5e1747ab589903a6a1f80f22',
    after: 'da1560886d4f094c3e6c9ef40349f7d38b5d27d7',
    receivedAt: new Date().toISOString(),
  };
}

let h: Harness;
let peer: ProtocolPeer;

beforeEach(async () => {
  h = await createHarness();
  peer = await new ProtocolPeer(TOKEN).start();
});

afterEach(async () => {
  await h.close();
  await peer.close();
});

function addApps(): void {
  h.kube.putGitRepository('apps', 'app-main', { url: 'https://gitlab.example.com/Group/App.git', ref: { branch: 'main' } });
  h.kube.putGitRepository('apps', 'app-dev', { url: 'ssh://git@gitlab.example.com:2222/group/app.git', ref: { branch: 'dev' } });
  h.kube.putGitRepository('infra', 'infra', { url: 'git@gitlab.example.com:group/infra.git' });
  h.kube.putGitRepository('apps', 'elsewhere', { url: 'https://github.com/group/app.git', ref: { branch: 'main' } });
}

describe('agent', () => {
  it('applies a Secret and a generic-hmac Receiver per GitLab GitRepository, owned and labelled', async () => {
    addApps();
    await h.startAgent({ gatewayUrl: peer.url, agentToken: TOKEN });
    await waitFor(() => h.kube.receivers.size === 3, 5000, 'three Receivers');

    expect([...h.kube.receivers.keys()].sort()).toEqual(['apps/kasgate-app-dev', 'apps/kasgate-app-main', 'infra/kasgate-infra']);
    const gitRepo = h.kube.gitRepositories.get('apps/app-main');
    const receiver = h.kube.receivers.get('apps/kasgate-app-main');
    expect(receiver?.['spec']).toEqual({
      type: 'generic-hmac',
      secretRef: { name: 'kasgate-app-main' },
      resources: [{ apiVersion: 'source.toolkit.fluxcd.io/v1', kind: 'GitRepository', name: 'app-main' }],
    });
    const secret = h.kube.secrets.get('apps/kasgate-app-main');
    for (const object of [receiver, secret]) {
      expect(object?.metadata['labels']).toEqual({ 'app.kubernetes.io/managed-by': 'kasgate' });
      expect(object?.metadata['ownerReferences']).toEqual([
        { apiVersion: 'source.toolkit.fluxcd.io/v1', kind: 'GitRepository', name: 'app-main', uid: gitRepo?.metadata['uid'] },
      ]);
    }
    expect(h.kube.secretToken('apps', 'kasgate-app-main')?.length).toBeGreaterThanOrEqual(40);
    expect(h.kube.secretToken('apps', 'kasgate-app-main')).not.toBe(h.kube.secretToken('apps', 'kasgate-app-dev'));
    for (const apply of h.kube.applies) {
      expect(apply.contentType).toBe('application/apply-patch+yaml');
      expect(apply.fieldManager).toBe('kasgate-agent');
    }
    expect(h.kube.unauthorized).toEqual([]);
  });

  it('keeps the existing token when it restarts', async () => {
    addApps();
    const first = await h.startAgent({ gatewayUrl: peer.url, agentToken: TOKEN });
    await waitFor(() => h.kube.receivers.size === 3);
    const token = h.kube.secretToken('apps', 'kasgate-app-main');
    await first.close();
    const appliesBefore = h.kube.applies.length;
    await h.startAgent({ gatewayUrl: peer.url, agentToken: TOKEN });
    await waitFor(() => h.kube.applies.length >= appliesBefore + 6, 5000, 'the second round of applies');
    expect(h.kube.secretToken('apps', 'kasgate-app-main')).toBe(token);
  });

  it('subscribes once with the whole set of paths, then only the first Receiver of a push is called, once', async () => {
    addApps();
    const agent = await h.startAgent({ gatewayUrl: peer.url, agentToken: TOKEN });
    const conn = await peer.connection(0);
    expect(conn.authorization).toBe(`Bearer ${TOKEN}`);
    const subscribe = await conn.nextFrame('subscribe');
    expect(subscribe).toEqual({ type: 'subscribe', projects: ['group/app', 'group/infra'] });
    await settle(150);
    expect(conn.framesOf('subscribe')).toHaveLength(1);

    conn.send(push('7', 'Group/App', 'refs/heads/main'));
    await waitFor(() => h.receiver.calls.length === 1, 5000, 'the Receiver call');
    const ack = await conn.nextFrame('ack');
    expect(ack).toEqual({ type: 'ack', eventId: '7' });
    await settle(150);
    expect(h.receiver.calls).toHaveLength(1);
    expect(h.receiver.calls[0]).toMatchObject({ namespace: 'apps', name: 'kasgate-app-main', resources: ['GitRepository/app-main'] });
    expect(JSON.parse(h.receiver.calls[0]?.body ?? '{}')).toMatchObject({ eventId: '7', ref: 'refs/heads/main' });
    expect(h.receiver.rejected).toEqual([]);

    // A redelivery of the same event is not triggered again.
    conn.send(push('7', 'group/app', 'refs/heads/main'));
    conn.send(push('8', 'group/infra', 'refs/heads/main'));
    await waitFor(() => h.receiver.calls.length === 2);
    await settle(150);
    expect(h.receiver.calls.map((c) => c.name)).toEqual(['kasgate-app-main', 'kasgate-infra']);

    const metrics = await agent.metrics.registry.metrics();
    expect(metrics).toMatch(/kasgate_agent_pushes_received_total 2/);
    expect(metrics).toMatch(/kasgate_agent_receivers_triggered_total 2/);
    expect(metrics).toMatch(/kasgate_agent_connected 1/);
  });

  it('acks a push that matches nothing, and triggers nothing', async () => {
    addApps();
    await h.startAgent({ gatewayUrl: peer.url, agentToken: TOKEN });
    const conn = await peer.connection(0);
    await conn.nextFrame('subscribe');
    conn.send(push('3', 'group/app', 'refs/heads/feature'));
    expect(await conn.nextFrame('ack')).toEqual({ type: 'ack', eventId: '3' });
    expect(h.receiver.calls).toEqual([]);
  });

  it('sends one debounced subscribe when GitRepositories change, and drops deleted ones', async () => {
    h.kube.putGitRepository('apps', 'app', { url: 'https://gitlab.example.com/group/app.git' });
    await h.startAgent({ gatewayUrl: peer.url, agentToken: TOKEN });
    const conn = await peer.connection(0);
    expect((await conn.nextFrame('subscribe')).projects).toEqual(['group/app']);

    h.kube.putGitRepository('apps', 'one', { url: 'https://gitlab.example.com/group/one.git' });
    h.kube.putGitRepository('apps', 'two', { url: 'https://gitlab.example.com/group/two.git' });
    h.kube.putGitRepository('apps', 'three', { url: 'https://gitlab.example.com/group/three.git' });
    const second = await conn.nextFrame('subscribe', 1);
    expect(second).toEqual({ type: 'subscribe', projects: ['group/app', 'group/one', 'group/three', 'group/two'] });
    await settle(200);
    expect(conn.framesOf('subscribe')).toHaveLength(2);

    h.kube.deleteGitRepository('apps', 'one');
    expect((await conn.nextFrame('subscribe', 2)).projects).toEqual(['group/app', 'group/three', 'group/two']);
  });

  it('triggers every managed Receiver once on resync', async () => {
    addApps();
    await h.startAgent({ gatewayUrl: peer.url, agentToken: TOKEN });
    const conn = await peer.connection(0);
    await conn.nextFrame('subscribe');
    conn.send({ type: 'resync', reason: 'cursor_expired' });
    await waitFor(() => h.receiver.calls.length === 3, 5000, 'three Receiver calls');
    await settle(150);
    expect(h.receiver.calls.map((c) => `${c.namespace}/${c.name}`).sort()).toEqual([
      'apps/kasgate-app-dev',
      'apps/kasgate-app-main',
      'infra/kasgate-infra',
    ]);
  });

  it('reconnects after a dropped socket and resumes after the last processed event', async () => {
    addApps();
    await h.startAgent({ gatewayUrl: peer.url, agentToken: TOKEN });
    const first = await peer.connection(0);
    await first.nextFrame('subscribe');
    first.send(push('41', 'group/app', 'refs/heads/main'));
    first.send(push('42', 'group/app', 'refs/heads/dev'));
    await waitFor(() => first.framesOf('ack').some((a) => a.eventId === '42'), 5000, 'the ack of 42');
    first.socket.terminate();

    const second = await peer.connection(1);
    expect(await second.nextFrame('subscribe')).toEqual({
      type: 'subscribe',
      projects: ['group/app', 'group/infra'],
      resumeAfter: '42',
    });
    // The gateway replays from its own cursor too: already-handled events are not triggered twice.
    second.send(push('42', 'group/app', 'refs/heads/dev'));
    second.send(push('43', 'group/app', 'refs/heads/main'));
    await waitFor(() => h.receiver.calls.length === 3);
    await settle(150);
    expect(h.receiver.calls.map((c) => c.name)).toEqual(['kasgate-app-main', 'kasgate-app-dev', 'kasgate-app-main']);
  });

  it('reconnects at once when a replica shuts down (1012)', async () => {
    addApps();
    await h.startAgent({ gatewayUrl: peer.url, agentToken: TOKEN, reconnect: { minMs: 3000, maxMs: 3000 } });
    const first = await peer.connection(0);
    await first.nextFrame('subscribe');
    const closedAt = Date.now();
    first.close(1012, 'replica shutting down');
    await peer.connection(1, 1500);
    expect(Date.now() - closedAt).toBeLessThan(1000);
  });

  it('stops for good when the token is revoked (4401)', async () => {
    addApps();
    const agent = await h.startAgent({ gatewayUrl: peer.url, agentToken: TOKEN });
    const conn = await peer.connection(0);
    await conn.nextFrame('subscribe');
    conn.close(4401, 'token revoked');
    await expect(agent.done).rejects.toBeInstanceOf(TokenRevokedError);
    await settle(500);
    expect(peer.connections).toHaveLength(1);
    expect(agent.status()).toMatchObject({ ready: false, gateway: 'revoked' });
  });

  it('stops when the gateway refuses the token at the upgrade (401)', async () => {
    addApps();
    const agent = await h.startAgent({ gatewayUrl: peer.url, agentToken: 'kgagent_wrong' });
    await expect(agent.done).rejects.toBeInstanceOf(TokenRevokedError);
    expect(peer.refused).toEqual([401]);
    expect(peer.connections).toHaveLength(0);
  });

  it('uses the receiver URL of the hello frame over its own setting', async () => {
    addApps();
    peer.helloConfig = { flux: { webhookReceiverUrl: h.receiver.url } };
    await h.startAgent({ gatewayUrl: peer.url, agentToken: TOKEN, webhookReceiverUrl: 'http://127.0.0.1:9/nowhere' });
    const conn = await peer.connection(0);
    await conn.nextFrame('subscribe');
    conn.send(push('1', 'group/infra', 'refs/heads/main'));
    await waitFor(() => h.receiver.calls.length === 1);
    expect(h.receiver.calls[0]?.name).toBe('kasgate-infra');
  });

  it('reaches the receiver through the API server service proxy, with the kube credentials', async () => {
    addApps();
    peer.helloConfig = { flux: { webhookReceiverUrl: '/api/v1/namespaces/flux-system/services/webhook-receiver:80/proxy' } };
    await h.startAgent({ gatewayUrl: peer.url, agentToken: TOKEN, webhookReceiverUrl: 'http://127.0.0.1:9/nowhere' });
    const conn = await peer.connection(0);
    await conn.nextFrame('subscribe');
    conn.send(push('1', 'group/app', 'refs/heads/dev'));
    await waitFor(() => h.receiver.calls.length === 1, 5000, 'the proxied Receiver call');
    expect(h.receiver.calls[0]?.name).toBe('kasgate-app-dev');
    // The API server took the call (it answers 401 without the agent's credentials) and did not pass them on.
    expect(h.kube.unauthorized).toEqual([]);
    expect(h.receiver.calls[0]?.headers['authorization']).toBeUndefined();
  });
});
