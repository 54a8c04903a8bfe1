/**
 * The agent when things go wrong: a failing receiver, missing CRDs, a Receiver Flux has not
 * reconciled yet, an object it must not take over; plus health, scoping, and the process entry.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { PushFrame } from '../../src/protocol/kasgate-v1.js';
import { fluxWebhookPath } from './support/fake-flux-receiver.js';
import { rulesFromManifests } from './support/fake-rbac.js';
import { GITLAB_URL, createHarness, type Harness } from './support/harness.js';
import { ProtocolPeer } from './support/protocol-peer.js';
import { settle, waitFor } from './support/wait.js';

const TOKEN = 'kgagent_reliability-0123456789abcdef';

const push = (eventId: string, path: string, ref: string): PushFrame => ({
  type: 'push',
  eventId,
  project: { id: 7, path, defaultBranch: 'main' },
  ref,
  before: '0'.repeat(40),
  after: 'a'.repeat(40),
  receivedAt: new Date().toISOString(),
});

let h: Harness;
let peer: ProtocolPeer;

afterEach(async () => {
  await h.close();
  await peer.close();
});

describe('agent reliability', () => {
  beforeEach(async () => {
    h = await createHarness();
    peer = await new ProtocolPeer(TOKEN).start();
    h.kube.putGitRepository('apps', 'app', { url: 'https://gitlab.example.com/group/app.git', ref: { branch: 'main' } });
  });

  it('retries a receiver that answers 5xx, and acks only afterwards, in order', async () => {
    const agent = await h.startAgent({ gatewayUrl: peer.url, agentToken: TOKEN });
    const conn = await peer.connection(0);
    await conn.nextFrame('subscribe');
    h.receiver.failNext.push(503, 500);
    conn.send(push('10', 'group/app', 'refs/heads/main'));
    conn.send(push('11', 'group/app', 'refs/heads/other'));
    await waitFor(() => h.receiver.calls.length === 1, 5000, 'the call after two failures');
    await waitFor(() => conn.framesOf('ack').length > 0);
    await settle(100);
    // 11 finished first, yet acking it before 10 would let a crash lose 10.
    expect(conn.framesOf('ack')).toEqual([{ type: 'ack', eventId: '11' }]);
    expect(h.receiver.rejected.map((r) => r.status)).toEqual([503, 500]);
    const metrics = await agent.metrics.registry.metrics();
    expect(metrics).toMatch(/kasgate_agent_receivers_triggered_total 1/);
    expect(metrics).not.toMatch(/kasgate_agent_trigger_failures_total\{/);
  });

  it('does not retry a 4xx, counts it as a failure, and still acks', async () => {
    const agent = await h.startAgent({ gatewayUrl: peer.url, agentToken: TOKEN });
    const conn = await peer.connection(0);
    await conn.nextFrame('subscribe');
    h.receiver.failNext.push(400);
    conn.send(push('20', 'group/app', 'refs/heads/main'));
    expect(await conn.nextFrame('ack')).toEqual({ type: 'ack', eventId: '20' });
    await settle(300);
    expect(h.receiver.rejected).toHaveLength(1);
    expect(h.receiver.calls).toHaveLength(0);
    expect(await agent.metrics.registry.metrics()).toMatch(/kasgate_agent_trigger_failures_total\{reason="rejected"\} 1/);
  });

  it('gives up after the configured attempts when the receiver stays down', async () => {
    const agent = await h.startAgent({ gatewayUrl: peer.url, agentToken: TOKEN });
    const conn = await peer.connection(0);
    await conn.nextFrame('subscribe');
    h.receiver.failNext.push(500, 500, 500, 500, 500, 500);
    conn.send(push('30', 'group/app', 'refs/heads/main'));
    expect(await conn.nextFrame('ack')).toEqual({ type: 'ack', eventId: '30' });
    expect(h.receiver.rejected).toHaveLength(4);
    expect(await agent.metrics.registry.metrics()).toMatch(/kasgate_agent_trigger_failures_total\{reason="exhausted"\} 1/);
  });

  it('waits for Flux to set status.webhookPath, and uses the path Flux set', async () => {
    h.kube.fluxController = false;
    await h.startAgent({ gatewayUrl: peer.url, agentToken: TOKEN, trigger: { attempts: 30, minDelayMs: 20, maxDelayMs: 50, timeoutMs: 2000 } });
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

  it('exposes liveness, readiness and metrics over HTTP', async () => {
    const agent = await h.startAgent({ gatewayUrl: peer.url, agentToken: TOKEN });
    const base = `http://127.0.0.1:${agent.healthPort}`;
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    await (await peer.connection(0)).nextFrame('subscribe');
    const ready = await fetch(`${base}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({ ready: true, fluxCrds: 'found', gateway: 'connected', managedRepositories: 1 });
    const metrics = await (await fetch(`${base}/metrics`)).text();
    for (const name of ['connected', 'pushes_received_total', 'receivers_triggered_total', 'trigger_failures_total', 'managed_gitrepositories']) {
      expect(metrics).toContain(`kasgate_agent_${name}`);
    }
    expect(metrics).toMatch(/kasgate_agent_connected 1/);
    expect(metrics).not.toContain(TOKEN);
  });

  it('watches only the configured namespaces', async () => {
    h.kube.putGitRepository('other', 'app', { url: 'https://gitlab.example.com/group/other.git' });
    await h.startAgent({ gatewayUrl: peer.url, agentToken: TOKEN, watchNamespaces: ['apps'] });
    expect((await (await peer.connection(0)).nextFrame('subscribe')).projects).toEqual(['group/app']);
    await waitFor(() => h.kube.receivers.size > 0);
    await settle(200);
    expect([...h.kube.receivers.keys()]).toEqual(['apps/kasgate-app']);
  });

  it('leaves alone a Secret of the same name that kasgate does not manage', async () => {
    h.kube.secrets.set('apps/kasgate-app', {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 'kasgate-app', namespace: 'apps', uid: 'u1' },
      data: { token: Buffer.from('theirs').toString('base64') },
    });
    await h.startAgent({ gatewayUrl: peer.url, agentToken: TOKEN });
    await (await peer.connection(0)).nextFrame('subscribe');
    await settle(300);
    expect(h.kube.applies).toEqual([]);
    expect(h.kube.secretToken('apps', 'kasgate-app')).toBe('theirs');
  });
});

describe('agent with the RBAC of deploy/', () => {
  const manifests = ['../../deploy/rbac.yaml', '../../deploy/rbac-service-proxy.yaml'].map((p) =>
    fileURLToPath(new URL(p, import.meta.url)),
  );

  it('does its whole job with exactly those rights, through the service proxy too', async () => {
    h = await createHarness({ rbac: await rulesFromManifests(...manifests) });
    peer = await new ProtocolPeer(TOKEN).start();
    h.kube.putGitRepository('apps', 'app', { url: 'https://gitlab.example.com/group/app.git', ref: { branch: 'main' } });
    peer.helloConfig = { flux: { webhookReceiverUrl: '/api/v1/namespaces/flux-system/services/webhook-receiver:80/proxy' } };
    await h.startAgent({ gatewayUrl: peer.url, agentToken: TOKEN });
    const conn = await peer.connection(0);
    await conn.nextFrame('subscribe');
    conn.send(push('1', 'group/app', 'refs/heads/main'));
    await waitFor(() => h.receiver.calls.length === 1, 5000, 'the Receiver call');
    expect(h.kube.forbidden).toEqual([]);
    expect(h.kube.receivers.size).toBe(1);
  });

  it('is really enforced: without create on Secrets nothing is applied', async () => {
    const rules = (await rulesFromManifests(manifests[0] as string)).map((rule) =>
      rule.resources?.includes('secrets') ? { ...rule, verbs: rule.verbs.filter((v) => v !== 'create') } : rule,
    );
    h = await createHarness({ rbac: rules });
    peer = await new ProtocolPeer(TOKEN).start();
    h.kube.putGitRepository('apps', 'app', { url: 'https://gitlab.example.com/group/app.git' });
    await h.startAgent({ gatewayUrl: peer.url, agentToken: TOKEN });
    await (await peer.connection(0)).nextFrame('subscribe');
    await waitFor(() => h.kube.forbidden.length > 0, 5000, 'a forbidden request');
    expect(h.kube.forbidden[0]).toMatchObject({ resource: 'secrets', verb: 'create' });
    expect(h.kube.receivers.size).toBe(0);
  });
});

describe('agent without Flux', () => {
  beforeEach(async () => {
    h = await createHarness({ crds: { receivers: false } });
    peer = await new ProtocolPeer(TOKEN).start();
    h.kube.putGitRepository('apps', 'app', { url: 'https://gitlab.example.com/group/app.git' });
  });

  it('does nothing until both Flux CRDs exist, and reports it as not ready', async () => {
    const agent = await h.startAgent({ gatewayUrl: peer.url, agentToken: TOKEN });
    await settle(500);
    expect(peer.connections).toHaveLength(0);
    expect(h.kube.applies).toHaveLength(0);
    const ready = await fetch(`http://127.0.0.1:${agent.healthPort}/readyz`);
    expect(ready.status).toBe(503);
    expect(await ready.json()).toMatchObject({ ready: false, fluxCrds: 'missing' });

    h.kube.crds.receivers = true;
    expect((await (await peer.connection(0, 5000)).nextFrame('subscribe')).projects).toEqual(['group/app']);
    await waitFor(() => h.kube.receivers.size === 1);
  });
});

describe('kasgate agent process', () => {
  beforeEach(async () => {
    h = await createHarness();
    peer = await new ProtocolPeer(TOKEN).start();
    h.kube.putGitRepository('apps', 'app', { url: 'https://gitlab.example.com/group/app.git' });
  });

  const runAgentProcess = (env: Record<string, string>) => {
    const script = fileURLToPath(new URL('./support/run-agent.ts', import.meta.url));
    const child = spawn(process.execPath, ['--import', 'tsx', script], {
      env: {
        PATH: process.env['PATH'] ?? '',
        KASGATE_URL: peer.url,
        GITLAB_EXTERNAL_URL: GITLAB_URL,
        KUBECONFIG: h.kubeconfigPath,
        KASGATE_AGENT_HEALTH_PORT: '0',
        KASGATE_AGENT_HEALTH_HOST: '127.0.0.1',
        LOG_LEVEL: 'info',
        ...env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    return { child, output: () => output };
  };

  it('stops cleanly on SIGTERM and never logs its token', async () => {
    const { child, output } = runAgentProcess({ KASGATE_AGENT_TOKEN: TOKEN });
    try {
      const conn = await peer.connection(0, 15_000).catch((err: unknown) => {
        throw new Error(`${String(err)}; agent output:\n${output()}`);
      });
      await conn.nextFrame('subscribe', 0, 10_000);
      const closed = once(conn.socket, 'close');
      child.kill('SIGTERM');
      const exited = once(child, 'exit') as Promise<[number | null]>;
      const timeout = settle(10_000).then(() => {
        throw new Error(`the agent did not exit within 10 s of SIGTERM; output:\n${output()}`);
      });
      const [code] = await Promise.race([exited, timeout]);
      expect(code).toBe(0);
      const [closeCode] = (await closed) as [number];
      expect(closeCode).toBe(1000);
      expect(output()).toContain('subscribed');
      expect(output()).not.toContain(TOKEN);
      expect(output()).not.toContain(h.kube.token);
    } finally {
      child.kill('SIGKILL');
    }
  }, 30_000);

  it('exits with an error naming the variable on bad configuration', async () => {
    const { child, output } = runAgentProcess({ KASGATE_AGENT_TOKEN: TOKEN, KASGATE_URL: 'not a url' });
    const [code] = (await once(child, 'exit')) as [number | null];
    expect(code).not.toBe(0);
    expect(output()).toContain('KASGATE_URL');
  }, 30_000);
});
