/**
 * The agent in-process, in annotate mode (the default), against the test API server and a
 * scripted kasgate.v1 peer over a real WebSocket: which sources a push annotates, the
 * subscription, acks, replay, reconnects and revocation.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { TokenRevokedError } from '../../src/agent/gateway-client.js';
import type { PushFrame } from '../../src/protocol/kasgate-v1.js';
import { createHarness, type Harness } from './support/harness.js';
import { ProtocolPeer } from './support/protocol-peer.js';
import { settle, waitFor } from './support/wait.js';

const TOKEN = 'kgagent_test-token-0123456789abcdef';
const ANNOTATION = 'reconcile.fluxcd.io/requestedAt';
const RFC3339_NANO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{9}Z$/;

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
  h.kube.putGitRepository('infra', 'infra', { url: 'ssh://git@gitlab.example.com/group/infra.git' });
  h.kube.putGitRepository('apps', 'elsewhere', { url: 'https://github.com/group/app.git', ref: { branch: 'main' } });
}

/** The successful annotation patches, as `Kind/namespace/name`, in order. */
const patched = (): string[] => h.kube.sourcePatches.filter((p) => p.failed === undefined).map((p) => `${p.kind}/${p.namespace}/${p.name}`);

describe('agent (annotate mode)', () => {
  it('annotates exactly the GitRepository a push can change, with a JSON merge patch, and writes nothing else', async () => {
    addApps();
    await h.startAgent({ gatewayUrl: peer.url, agentToken: TOKEN });
    const conn = await peer.connection(0);
    await conn.nextFrame('subscribe');

    conn.send(push('7', 'Group/App', 'refs/heads/main'));
    expect(await conn.nextFrame('ack')).toEqual({ type: 'ack', eventId: '7' });
    await settle(150);
    expect(patched()).toEqual(['GitRepository/apps/app-main']);
    const [patch] = h.kube.sourcePatches;
    expect(patch?.contentType).toBe('application/merge-patch+json');
    expect(patch?.fieldManager).toBe('kasgate-agent');
    expect(Object.keys(patch?.body ?? {})).toEqual(['metadata']);
    const value = patch?.body['metadata']['annotations'][ANNOTATION] as string;
    expect(value).toMatch(RFC3339_NANO);
    expect(h.kube.requestedAt('GitRepository', 'apps', 'app-main')).toBe(value);
    expect(h.kube.requestedAt('GitRepository', 'apps', 'app-dev')).toBeUndefined();

    // No Receiver, no Secret: annotate mode needs neither.
    expect(h.kube.applies).toEqual([]);
    expect(h.kube.secrets.size).toBe(0);
    expect(h.kube.receivers.size).toBe(0);
    expect(h.receiver.calls).toEqual([]);
    expect(h.kube.unauthorized).toEqual([]);
  });

  it("follows Flux's default: a GitRepository without ref is master's, whatever the project's default branch", async () => {
    addApps();
    await h.startAgent({ gatewayUrl: peer.url, agentToken: TOKEN });
    const conn = await peer.connection(0);
    await conn.nextFrame('subscribe');

    conn.send(push('1', 'group/infra', 'refs/heads/main', 'main'));
    conn.send(push('2', 'group/infra', 'refs/heads/trunk', 'trunk'));
    await waitFor(() => conn.framesOf('ack').some((a) => a.eventId === '2'), 5000, 'the ack of 2');
    expect(patched()).toEqual([]);

    conn.send(push('3', 'group/infra', 'refs/heads/master', 'main'));
    await waitFor(() => conn.framesOf('ack').some((a) => a.eventId === '3'), 5000, 'the ack of 3');
    expect(patched()).toEqual(['GitRepository/infra/infra']);
  });

  it('gives two requests for one source within a second two different values, so Flux acts on both', async () => {
    addApps();
    await h.startAgent({ gatewayUrl: peer.url, agentToken: TOKEN });
    const conn = await peer.connection(0);
    await conn.nextFrame('subscribe');
    const started = Date.now();
    conn.send(push('5', 'group/app', 'refs/heads/main'));
    conn.send(push('6', 'group/app', 'refs/heads/main'));
    await waitFor(() => conn.framesOf('ack').some((a) => a.eventId === '6'), 5000, 'the ack of 6');
    expect(Date.now() - started).toBeLessThan(1000);
    const values = h.kube.sourcePatches.map((p) => p.body['metadata']['annotations'][ANNOTATION] as string);
    expect(values).toHaveLength(2);
    expect(values[0]).not.toBe(values[1]);
    expect(values[0]?.slice(0, 19)).toBe(values[1]?.slice(0, 19)); // the same second
    expect(h.kube.requestedAt('GitRepository', 'apps', 'app-main')).toBe([...values].sort()[1]);
  });

  it('subscribes once with the whole set of paths, and does not annotate a redelivered event again', async () => {
    addApps();
    const agent = await h.startAgent({ gatewayUrl: peer.url, agentToken: TOKEN });
    const conn = await peer.connection(0);
    expect(conn.authorization).toBe(`Bearer ${TOKEN}`);
    expect(await conn.nextFrame('subscribe')).toEqual({ type: 'subscribe', projects: ['group/app', 'group/infra'] });
    await settle(150);
    expect(conn.framesOf('subscribe')).toHaveLength(1);

    conn.send(push('7', 'group/app', 'refs/heads/main'));
    await conn.nextFrame('ack');
    conn.send(push('7', 'group/app', 'refs/heads/main'));
    conn.send(push('8', 'group/infra', 'refs/heads/master'));
    await waitFor(() => patched().length === 2);
    await settle(150);
    expect(patched()).toEqual(['GitRepository/apps/app-main', 'GitRepository/infra/infra']);
    // The agent's own annotations come back through the watch; they change nothing it subscribes to.
    expect(conn.framesOf('subscribe')).toHaveLength(1);

    const metrics = await agent.metrics.registry.metrics();
    expect(metrics).toMatch(/kasgate_agent_events_received_total\{type="push"\} 2/);
    expect(metrics).toMatch(/kasgate_agent_reconciles_requested_total\{kind="GitRepository",mode="annotate"\} 2/);
    expect(metrics).toMatch(/kasgate_agent_managed_sources\{kind="GitRepository"\} 3/);
    expect(metrics).toMatch(/kasgate_agent_connected 1/);
  });

  it('acks a push that matches nothing, and annotates nothing', async () => {
    addApps();
    await h.startAgent({ gatewayUrl: peer.url, agentToken: TOKEN });
    const conn = await peer.connection(0);
    await conn.nextFrame('subscribe');
    conn.send(push('3', 'group/app', 'refs/heads/feature'));
    expect(await conn.nextFrame('ack')).toEqual({ type: 'ack', eventId: '3' });
    expect(h.kube.sourcePatches).toEqual([]);
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

  it('on resync annotates every managed source of both kinds once', async () => {
    addApps();
    h.kube.putOciRepository('apps', 'manifests', { url: 'oci://registry.example.com/group/app/manifests', ref: { digest: 'sha256:abc' } });
    h.kube.putOciRepository('apps', 'ghcr', { url: 'oci://ghcr.io/group/app' });
    await h.startAgent({ gatewayUrl: peer.url, agentToken: TOKEN });
    const conn = await peer.connection(0);
    await conn.nextFrame('subscribe');
    conn.send({ type: 'resync', reason: 'cursor_expired' });
    await waitFor(() => patched().length === 4, 5000, 'four annotations');
    await settle(150);
    expect(patched().sort()).toEqual([
      'GitRepository/apps/app-dev',
      'GitRepository/apps/app-main',
      'GitRepository/infra/infra',
      'OCIRepository/apps/manifests',
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
    // The gateway replays from its own cursor too: already-handled events are not annotated twice.
    second.send(push('42', 'group/app', 'refs/heads/dev'));
    second.send(push('43', 'group/app', 'refs/heads/main'));
    await waitFor(() => patched().length === 3);
    await settle(150);
    expect(patched()).toEqual(['GitRepository/apps/app-main', 'GitRepository/apps/app-dev', 'GitRepository/apps/app-main']);
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
});
