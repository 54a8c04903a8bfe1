/**
 * The agent in receiver mode (KASGATE_TRIGGER_MODE=receiver, kas-compatible): a Secret and a
 * generic-hmac Receiver per source, a signed call per event, and the same event retried when
 * the Receiver's token or path changed under it.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { AgentConfig } from '../../src/agent/config.js';
import type { ArtifactFrame, PushFrame } from '../../src/protocol/kasgate-v1.js';
import { fluxWebhookPath } from './support/fake-flux-receiver.js';
import { createHarness, type Harness } from './support/harness.js';
import { ProtocolPeer } from './support/protocol-peer.js';
import { settle, waitFor } from './support/wait.js';

const TOKEN = 'kgagent_receiver-mode-0123456789abcdef';

function push(eventId: string, path: string, ref: string): PushFrame {
  return {
    type: 'push',
    eventId,
    project: { id: 42, path, defaultBranch: 'main' },
    ref,
    before: null,
    after: 'da1560886d4f094c3e6c9ef40349f7d38b5d27d7',
    receivedAt: new Date().toISOString(),
  };
}

const registryPush = (eventId: string, repository: string, tag: string): ArtifactFrame => ({
  type: 'artifact',
  eventId,
  source: 'registry',
  project: { id: 42, path: 'group/app', defaultBranch: 'main' },
  repository,
  tag,
  digest: 'sha256:0f0e',
  receivedAt: new Date().toISOString(),
});

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

const start = (overrides: Partial<AgentConfig> = {}) =>
  h.startAgent({ gatewayUrl: peer.url, agentToken: TOKEN, triggerMode: 'receiver', ...overrides });

function addSources(): void {
  h.kube.putGitRepository('apps', 'app-main', { url: 'https://gitlab.example.com/Group/App.git', ref: { branch: 'main' } });
  h.kube.putGitRepository('apps', 'app-dev', { url: 'ssh://git@gitlab.example.com:2222/group/app.git', ref: { branch: 'dev' } });
  h.kube.putGitRepository('infra', 'infra', { url: 'https://gitlab.example.com/group/infra.git' });
  h.kube.putGitRepository('apps', 'elsewhere', { url: 'https://github.com/group/app.git', ref: { branch: 'main' } });
  h.kube.putOciRepository('apps', 'app-main', { url: 'oci://registry.example.com/group/app/manifests', ref: { tag: 'main' } });
}

const eventIdsOf = (namespace: string, name: string): string[] =>
  h.receiver.callsTo(namespace, name).map((c) => (JSON.parse(c.body) as { eventId: string }).eventId);

describe('agent (receiver mode)', () => {
  it('applies a Secret and a generic-hmac Receiver per source of either kind, owned and labelled', async () => {
    addSources();
    await start();
    await waitFor(() => h.kube.receivers.size === 4, 5000, 'four Receivers');

    expect([...h.kube.receivers.keys()].sort()).toEqual([
      'apps/kasgate-app-dev',
      'apps/kasgate-app-main',
      'apps/kasgate-oci-app-main',
      'infra/kasgate-infra',
    ]);
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
    // The OCIRepository of the same name gets objects of its own, naming it.
    const ociRepo = h.kube.ociRepositories.get('apps/app-main');
    const ociReceiver = h.kube.receivers.get('apps/kasgate-oci-app-main');
    expect(ociReceiver?.['spec']).toEqual({
      type: 'generic-hmac',
      secretRef: { name: 'kasgate-oci-app-main' },
      resources: [{ apiVersion: 'source.toolkit.fluxcd.io/v1', kind: 'OCIRepository', name: 'app-main' }],
    });
    expect(h.kube.secrets.get('apps/kasgate-oci-app-main')?.metadata['ownerReferences']).toEqual([
      { apiVersion: 'source.toolkit.fluxcd.io/v1', kind: 'OCIRepository', name: 'app-main', uid: ociRepo?.metadata['uid'] },
    ]);
    expect(h.kube.secretToken('apps', 'kasgate-app-main')?.length).toBeGreaterThanOrEqual(40);
    expect(h.kube.secretToken('apps', 'kasgate-app-main')).not.toBe(h.kube.secretToken('apps', 'kasgate-app-dev'));
    for (const apply of h.kube.applies) {
      expect(apply.contentType).toBe('application/apply-patch+yaml');
      expect(apply.fieldManager).toBe('kasgate-agent');
    }
    // Receiver mode never annotates the sources themselves.
    expect(h.kube.sourcePatches).toEqual([]);
    expect(h.kube.unauthorized).toEqual([]);
  });

  it('keeps the existing token when it restarts', async () => {
    addSources();
    const first = await start();
    await waitFor(() => h.kube.receivers.size === 4);
    const token = h.kube.secretToken('apps', 'kasgate-app-main');
    await first.close();
    const appliesBefore = h.kube.applies.length;
    await start();
    await waitFor(() => h.kube.applies.length >= appliesBefore + 8, 5000, 'the second round of applies');
    expect(h.kube.secretToken('apps', 'kasgate-app-main')).toBe(token);
  });

  it('calls only the Receiver of the source an event can change, once per event', async () => {
    addSources();
    const agent = await start();
    const conn = await peer.connection(0);
    expect((await conn.nextFrame('subscribe')).projects).toEqual(['group/app', 'group/app/manifests', 'group/infra']);

    conn.send(push('7', 'Group/App', 'refs/heads/main'));
    await waitFor(() => h.receiver.calls.length === 1, 5000, 'the Receiver call');
    expect(await conn.nextFrame('ack')).toEqual({ type: 'ack', eventId: '7' });
    expect(h.receiver.calls[0]).toMatchObject({ namespace: 'apps', name: 'kasgate-app-main', resources: ['GitRepository/app-main'] });
    expect(JSON.parse(h.receiver.calls[0]?.body ?? '{}')).toMatchObject({ eventId: '7', ref: 'refs/heads/main' });

    conn.send(push('7', 'group/app', 'refs/heads/main'));
    conn.send(registryPush('8', 'group/app/manifests', 'main'));
    await waitFor(() => h.receiver.calls.length === 2);
    await settle(150);
    expect(h.receiver.calls.map((c) => c.resources)).toEqual([['GitRepository/app-main'], ['OCIRepository/app-main']]);
    expect(h.receiver.rejected).toEqual([]);
    const metrics = await agent.metrics.registry.metrics();
    expect(metrics).toMatch(/kasgate_agent_reconciles_requested_total\{kind="GitRepository",mode="receiver"\} 1/);
    expect(metrics).toMatch(/kasgate_agent_reconciles_requested_total\{kind="OCIRepository",mode="receiver"\} 1/);
  });

  it('calls every managed Receiver once on resync', async () => {
    addSources();
    await start();
    const conn = await peer.connection(0);
    await conn.nextFrame('subscribe');
    conn.send({ type: 'resync', reason: 'cursor_expired' });
    await waitFor(() => h.receiver.calls.length === 4, 5000, 'four Receiver calls');
    await settle(150);
    expect(h.receiver.calls.map((c) => `${c.namespace}/${c.name}`).sort()).toEqual([
      'apps/kasgate-app-dev',
      'apps/kasgate-app-main',
      'apps/kasgate-oci-app-main',
      'infra/kasgate-infra',
    ]);
  });

  it('retries the same event after the Secret was rotated and Flux gave the Receiver a new path', async () => {
    addSources();
    const agent = await start();
    const conn = await peer.connection(0);
    await conn.nextFrame('subscribe');
    conn.send(push('1', 'group/app', 'refs/heads/main'));
    await conn.nextFrame('ack');
    const oldPath = h.kube.receivers.get('apps/kasgate-app-main')?.['status']?.webhookPath as string;

    h.kube.rotateSecretToken('apps', 'kasgate-app-main', 'rotated-token-0123456789', true);
    expect(h.kube.receivers.get('apps/kasgate-app-main')?.['status']?.webhookPath).not.toBe(oldPath);
    conn.send(push('2', 'group/app', 'refs/heads/main'));
    expect(await conn.nextFrame('ack', 1)).toEqual({ type: 'ack', eventId: '2' });

    // The old path is gone (404); the agent read Secret and Receiver again and delivered event 2.
    expect(h.receiver.rejected).toEqual([{ path: oldPath, status: 404 }]);
    expect(eventIdsOf('apps', 'kasgate-app-main')).toEqual(['1', '2']);
    expect(h.kube.secretToken('apps', 'kasgate-app-main')).toBe('rotated-token-0123456789');
    expect(await agent.metrics.registry.metrics()).not.toMatch(/kasgate_agent_trigger_failures_total\{/);
  });

  it('retries the same event after the Secret was rotated while the Receiver kept its path', async () => {
    addSources();
    await start();
    const conn = await peer.connection(0);
    await conn.nextFrame('subscribe');
    conn.send(registryPush('1', 'group/app/manifests', 'main'));
    await conn.nextFrame('ack');

    h.kube.rotateSecretToken('apps', 'kasgate-oci-app-main', 'rotated-oci-token-0123456789', false);
    conn.send(registryPush('2', 'group/app/manifests', 'main'));
    expect(await conn.nextFrame('ack', 1)).toEqual({ type: 'ack', eventId: '2' });
    // Signed with the old token: Flux refuses it (400); signed again with the new one: accepted.
    expect(h.receiver.rejected.map((r) => r.status)).toEqual([400]);
    expect(eventIdsOf('apps', 'kasgate-oci-app-main')).toEqual(['1', '2']);
  });

  it('gives up on an event after the configured attempts when the Receiver keeps refusing, and still acks', async () => {
    addSources();
    const agent = await start({ trigger: { attempts: 3, minDelayMs: 10, maxDelayMs: 20, timeoutMs: 2000 } });
    const conn = await peer.connection(0);
    await conn.nextFrame('subscribe');
    await waitFor(() => h.kube.receivers.size === 4);
    h.receiver.failNext.push(403, 403, 403, 403);
    conn.send(push('20', 'group/app', 'refs/heads/main'));
    expect(await conn.nextFrame('ack')).toEqual({ type: 'ack', eventId: '20' });
    await settle(200);
    expect(h.receiver.rejected).toHaveLength(3);
    expect(h.receiver.calls).toHaveLength(0);
    expect(await agent.metrics.registry.metrics()).toMatch(/kasgate_agent_trigger_failures_total\{reason="rejected"\} 1/);
  });

  it('retries a Receiver that answers 5xx, and acks only afterwards, in order', async () => {
    addSources();
    const agent = await start();
    const conn = await peer.connection(0);
    await conn.nextFrame('subscribe');
    await waitFor(() => h.kube.receivers.size === 4);
    h.receiver.failNext.push(503, 500);
    conn.send(push('10', 'group/app', 'refs/heads/main'));
    conn.send(push('11', 'group/app', 'refs/heads/other'));
    await waitFor(() => h.receiver.calls.length === 1, 5000, 'the call after two failures');
    await waitFor(() => conn.framesOf('ack').length > 0);
    await settle(100);
    // 11 finished first, yet acking it before 10 would let a crash lose 10.
    expect(conn.framesOf('ack')).toEqual([{ type: 'ack', eventId: '11' }]);
    expect(h.receiver.rejected.map((r) => r.status)).toEqual([503, 500]);
    expect(await agent.metrics.registry.metrics()).not.toMatch(/kasgate_agent_trigger_failures_total\{/);
  });

  it('waits for Flux to set status.webhookPath, and uses the path Flux set', async () => {
    h.kube.fluxController = false;
    h.kube.putGitRepository('apps', 'app', { url: 'https://gitlab.example.com/group/app.git', ref: { branch: 'main' } });
    await start({ trigger: { attempts: 30, minDelayMs: 20, maxDelayMs: 50, timeoutMs: 2000 } });
    const conn = await peer.connection(0);
    await conn.nextFrame('subscribe');
    conn.send(push('40', 'group/app', 'refs/heads/main'));
    await settle(150);
    expect(h.receiver.calls).toHaveLength(0);
    const token = h.kube.secretToken('apps', 'kasgate-app') as string;
    h.kube.setReceiverWebhookPath('apps', 'kasgate-app', fluxWebhookPath(token, 'kasgate-app', 'apps'));
    await waitFor(() => h.receiver.calls.length === 1, 5000, 'the call once the path is set');
    expect(await conn.nextFrame('ack')).toEqual({ type: 'ack', eventId: '40' });
  });

  it('uses the receiver URL of the hello frame over its own setting, and a new one from a config frame', async () => {
    addSources();
    peer.helloConfig = { flux: { webhookReceiverUrl: h.receiver.url } };
    await start({ webhookReceiverUrl: 'http://127.0.0.1:9/nowhere' });
    const conn = await peer.connection(0);
    await conn.nextFrame('subscribe');
    conn.send(push('1', 'group/infra', 'refs/heads/master'));
    await waitFor(() => h.receiver.calls.length === 1);
    expect(h.receiver.calls[0]?.name).toBe('kasgate-infra');

    expect(h.kube.proxied).toBe(0);

    // The admin points the agent at the service proxy on the live connection: the next call goes through the API server.
    conn.send({ type: 'config', config: { flux: { webhookReceiverUrl: '/api/v1/namespaces/flux-system/services/webhook-receiver/proxy' } } });
    await settle(50);
    conn.send(push('2', 'group/infra', 'refs/heads/master'));
    await waitFor(() => h.receiver.calls.length === 2, 5000, 'the call after the config change');
    expect(h.kube.proxied).toBe(1);
    expect(peer.connections).toHaveLength(1);
  });

  it('reaches the receiver through the API server service proxy, with the kube credentials', async () => {
    addSources();
    peer.helloConfig = { flux: { webhookReceiverUrl: '/api/v1/namespaces/flux-system/services/webhook-receiver:80/proxy' } };
    await start({ webhookReceiverUrl: 'http://127.0.0.1:9/nowhere' });
    const conn = await peer.connection(0);
    await conn.nextFrame('subscribe');
    conn.send(push('1', 'group/app', 'refs/heads/dev'));
    await waitFor(() => h.receiver.calls.length === 1, 5000, 'the proxied Receiver call');
    expect(h.receiver.calls[0]?.name).toBe('kasgate-app-dev');
    // The API server took the call (it answers 401 without the agent's credentials) and did not pass them on.
    expect(h.kube.unauthorized).toEqual([]);
    expect(h.kube.proxied).toBe(1);
    expect(h.receiver.calls[0]?.headers['authorization']).toBeUndefined();
  });

  it('leaves alone a Secret of the same name that kasgate does not manage', async () => {
    h.kube.putGitRepository('apps', 'app', { url: 'https://gitlab.example.com/group/app.git' });
    h.kube.secrets.set('apps/kasgate-app', {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 'kasgate-app', namespace: 'apps', uid: 'u1' },
      data: { token: Buffer.from('theirs').toString('base64') },
    });
    await start();
    await (await peer.connection(0)).nextFrame('subscribe');
    await settle(300);
    expect(h.kube.applies).toEqual([]);
    expect(h.kube.secretToken('apps', 'kasgate-app')).toBe('theirs');
  });

  it("does not take over another source's Secret when names collide (GitRepository oci-x, OCIRepository x)", async () => {
    h.kube.putGitRepository('apps', 'oci-app', { url: 'https://gitlab.example.com/group/app.git' });
    await start();
    await waitFor(() => h.kube.receivers.size === 1);
    const token = h.kube.secretToken('apps', 'kasgate-oci-app');
    h.kube.putOciRepository('apps', 'app', { url: 'oci://registry.example.com/group/app' });
    await settle(400);
    expect(h.kube.receivers.get('apps/kasgate-oci-app')?.['spec']?.resources).toEqual([
      { apiVersion: 'source.toolkit.fluxcd.io/v1', kind: 'GitRepository', name: 'oci-app' },
    ]);
    expect(h.kube.secretToken('apps', 'kasgate-oci-app')).toBe(token);
  });
});
