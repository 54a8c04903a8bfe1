/**
 * The agent when things go wrong: an API server that fails patches, missing CRDs, the exact
 * rights of deploy/agent (annotate mode with the base only, receiver mode with its
 * components); plus health, scoping, and the process entry.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ArtifactFrame, PushFrame } from '../../src/protocol/kasgate-v1.js';
import { deployPath, rulesFromKustomization } from './support/fake-rbac.js';
import { GITLAB_URL, REGISTRY_HOST, createHarness, type Harness } from './support/harness.js';
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

const tagPush = (eventId: string, repository: string, tag: string): ArtifactFrame => ({
  type: 'artifact',
  eventId,
  source: 'registry',
  project: { id: 7, path: 'group/app', defaultBranch: 'main' },
  repository,
  tag,
  digest: null,
  receivedAt: new Date().toISOString(),
});

let h: Harness;
let peer: ProtocolPeer;

afterEach(async () => {
  await h.close();
  await peer.close();
});

const okPatches = () => h.kube.sourcePatches.filter((p) => p.failed === undefined);

describe('agent reliability (annotate mode)', () => {
  beforeEach(async () => {
    h = await createHarness();
    peer = await new ProtocolPeer(TOKEN).start();
    h.kube.putGitRepository('apps', 'app', { url: 'https://gitlab.example.com/group/app.git', ref: { branch: 'main' } });
  });

  it('retries a patch after a 5xx, a conflict and a dropped connection, and acks only afterwards, in order', async () => {
    const agent = await h.startAgent({ gatewayUrl: peer.url, agentToken: TOKEN });
    const conn = await peer.connection(0);
    await conn.nextFrame('subscribe');
    h.kube.failSourcePatches.push(503, 409, 'drop');
    conn.send(push('10', 'group/app', 'refs/heads/main'));
    conn.send(push('11', 'group/app', 'refs/heads/other'));
    await waitFor(() => okPatches().length === 1, 5000, 'the patch after three failures');
    await waitFor(() => conn.framesOf('ack').length > 0);
    await settle(100);
    // 11 finished first, yet acking it before 10 would let a crash lose 10.
    expect(conn.framesOf('ack')).toEqual([{ type: 'ack', eventId: '11' }]);
    expect(h.kube.sourcePatches.map((p) => p.failed)).toEqual([503, 409, 'dropped', undefined]);
    expect(h.kube.requestedAt('GitRepository', 'apps', 'app')).toBeDefined();
    const metrics = await agent.metrics.registry.metrics();
    expect(metrics).toMatch(/kasgate_agent_reconciles_requested_total\{kind="GitRepository",mode="annotate"\} 1/);
    expect(metrics).not.toMatch(/kasgate_agent_trigger_failures_total\{/);
  });

  it('does not retry a refused patch (422), counts it, and still acks', async () => {
    const agent = await h.startAgent({ gatewayUrl: peer.url, agentToken: TOKEN });
    const conn = await peer.connection(0);
    await conn.nextFrame('subscribe');
    h.kube.failSourcePatches.push(422);
    conn.send(push('20', 'group/app', 'refs/heads/main'));
    expect(await conn.nextFrame('ack')).toEqual({ type: 'ack', eventId: '20' });
    await settle(300);
    expect(h.kube.sourcePatches.map((p) => p.failed)).toEqual([422]);
    expect(await agent.metrics.registry.metrics()).toMatch(/kasgate_agent_trigger_failures_total\{reason="rejected"\} 1/);
  });

  it('gives up after the configured attempts when the API server stays down', async () => {
    const agent = await h.startAgent({ gatewayUrl: peer.url, agentToken: TOKEN });
    const conn = await peer.connection(0);
    await conn.nextFrame('subscribe');
    h.kube.failSourcePatches.push(500, 500, 500, 500, 500, 500);
    conn.send(push('30', 'group/app', 'refs/heads/main'));
    expect(await conn.nextFrame('ack')).toEqual({ type: 'ack', eventId: '30' });
    expect(h.kube.sourcePatches).toHaveLength(4);
    expect(await agent.metrics.registry.metrics()).toMatch(/kasgate_agent_trigger_failures_total\{reason="exhausted"\} 1/);
  });

  it('does not count a source deleted before its patch as a failure', async () => {
    const agent = await h.startAgent({ gatewayUrl: peer.url, agentToken: TOKEN });
    const conn = await peer.connection(0);
    await conn.nextFrame('subscribe');
    h.kube.gitRepositories.delete('apps/app'); // gone from the API server; the watch has not said so yet
    conn.send(push('31', 'group/app', 'refs/heads/main'));
    expect(await conn.nextFrame('ack')).toEqual({ type: 'ack', eventId: '31' });
    expect(h.kube.sourcePatches.map((p) => p.failed)).toEqual([404]);
    expect(await agent.metrics.registry.metrics()).not.toMatch(/kasgate_agent_trigger_failures_total\{/);
  });

  it('exposes liveness, readiness and metrics over HTTP', async () => {
    const agent = await h.startAgent({ gatewayUrl: peer.url, agentToken: TOKEN });
    const base = `http://127.0.0.1:${agent.healthPort}`;
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    await (await peer.connection(0)).nextFrame('subscribe');
    const ready = await fetch(`${base}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toEqual({
      ready: true,
      triggerMode: 'annotate',
      fluxCrds: 'found',
      missingCrds: [],
      sourcesSynced: true,
      gateway: 'connected',
      managedSources: { GitRepository: 1, OCIRepository: 0 },
    });
    const metrics = await (await fetch(`${base}/metrics`)).text();
    for (const name of ['connected', 'events_received_total', 'reconciles_requested_total', 'trigger_failures_total', 'managed_sources']) {
      expect(metrics).toContain(`kasgate_agent_${name}`);
    }
    expect(metrics).toMatch(/kasgate_agent_connected 1/);
    expect(metrics).not.toContain(TOKEN);
  });

  it('watches only the configured namespaces', async () => {
    h.kube.putGitRepository('other', 'app', { url: 'https://gitlab.example.com/group/other.git' });
    h.kube.putOciRepository('other', 'app', { url: `oci://${REGISTRY_HOST}/group/third` });
    await h.startAgent({ gatewayUrl: peer.url, agentToken: TOKEN, watchNamespaces: ['apps'] });
    const conn = await peer.connection(0);
    expect((await conn.nextFrame('subscribe')).projects).toEqual(['group/app']);
    conn.send({ type: 'resync', reason: 'cursor_expired' });
    await waitFor(() => okPatches().length === 1);
    await settle(200);
    expect(okPatches().map((p) => `${p.namespace}/${p.name}`)).toEqual(['apps/app']);
  });
});

describe('agent with the RBAC of deploy/agent', () => {
  const base = deployPath('agent/base');
  const receiverMode = deployPath('agent/components/receiver-mode');
  const serviceProxy = deployPath('agent/components/service-proxy');

  it('annotate mode: the base rules alone do the whole job (status reporting included), without Receiver CRD, Secret or Receiver rights', async () => {
    const rules = await rulesFromKustomization(base);
    expect(rules.flatMap((r) => r.resources ?? []).sort()).toEqual(['gitrepositories', 'helmreleases', 'kustomizations', 'ocirepositories']);
    // Kustomizations and HelmReleases are only read.
    for (const rule of rules.filter((r) => r.resources?.some((x) => x === 'kustomizations' || x === 'helmreleases'))) {
      expect(rule.verbs.sort()).toEqual(['get', 'list', 'watch']);
    }
    h = await createHarness({ rbac: rules, crds: { receivers: false } });
    peer = await new ProtocolPeer(TOKEN).start();
    peer.answerSubscribes = true;
    h.kube.putGitRepository('apps', 'app', { url: 'https://gitlab.example.com/group/app.git', ref: { branch: 'main' } });
    h.kube.putOciRepository('apps', 'manifests', { url: `oci://${REGISTRY_HOST}/group/app/manifests` });
    h.kube.putKustomization('apps', 'app', { sourceRef: { kind: 'GitRepository', name: 'app' } });
    h.kube.putHelmRelease('apps', 'chart', { chartRef: { kind: 'OCIRepository', name: 'manifests' } });
    const agent = await h.startAgent({ gatewayUrl: peer.url, agentToken: TOKEN });
    const conn = await peer.connection(0);
    await conn.nextFrame('subscribe');
    conn.send(push('1', 'group/app', 'refs/heads/main'));
    conn.send(tagPush('2', 'group/app/manifests', 'latest'));
    await waitFor(() => conn.framesOf('ack').some((a) => a.eventId === '2'), 5000, 'both events handled');
    expect(okPatches().map((p) => `${p.kind}/${p.name}`)).toEqual(['GitRepository/app', 'OCIRepository/manifests']);
    const full = await conn.nextFrame('status');
    expect(full.objects.map((o) => `${o.kind}/${o.name}`).sort()).toEqual(['GitRepository/app', 'HelmRelease/chart', 'Kustomization/app', 'OCIRepository/manifests']);
    expect(h.kube.forbidden).toEqual([]);
    expect(h.kube.secrets.size + h.kube.receivers.size).toBe(0);
    expect(agent.status()).toMatchObject({ ready: true, triggerMode: 'annotate' });
  });

  it('an older ClusterRole without Kustomization and HelmRelease rights: the agent still works and reports its sources', async () => {
    const rules = (await rulesFromKustomization(base)).filter((r) => r.resources?.includes('gitrepositories'));
    h = await createHarness({ rbac: rules });
    peer = await new ProtocolPeer(TOKEN).start();
    peer.answerSubscribes = true;
    h.kube.putGitRepository('apps', 'app', { url: 'https://gitlab.example.com/group/app.git', ref: { branch: 'main' } });
    h.kube.putKustomization('apps', 'app', { sourceRef: { kind: 'GitRepository', name: 'app' } });
    const agent = await h.startAgent({ gatewayUrl: peer.url, agentToken: TOKEN });
    const conn = await peer.connection(0);
    const full = await conn.nextFrame('status');
    expect(full.objects.map((o) => `${o.kind}/${o.name}`)).toEqual(['GitRepository/app']);
    expect(h.kube.forbidden).toContainEqual({ apiGroup: 'kustomize.toolkit.fluxcd.io', resource: 'kustomizations', verb: 'list' });
    conn.send(push('1', 'group/app', 'refs/heads/main'));
    expect(await conn.nextFrame('ack')).toEqual({ type: 'ack', eventId: '1' });
    expect(agent.status()).toMatchObject({ ready: true });
  });

  it('annotate mode is really enforced: without patch, the annotation is forbidden', async () => {
    const rules = (await rulesFromKustomization(base)).map((rule) => ({ ...rule, verbs: rule.verbs.filter((v) => v !== 'patch') }));
    h = await createHarness({ rbac: rules });
    peer = await new ProtocolPeer(TOKEN).start();
    h.kube.putGitRepository('apps', 'app', { url: 'https://gitlab.example.com/group/app.git', ref: { branch: 'main' } });
    const agent = await h.startAgent({ gatewayUrl: peer.url, agentToken: TOKEN });
    const conn = await peer.connection(0);
    await conn.nextFrame('subscribe');
    conn.send(push('1', 'group/app', 'refs/heads/main'));
    expect(await conn.nextFrame('ack')).toEqual({ type: 'ack', eventId: '1' });
    expect(h.kube.forbidden).toEqual([{ apiGroup: 'source.toolkit.fluxcd.io', resource: 'gitrepositories', namespace: 'apps', name: 'app', verb: 'patch' }]);
    expect(h.kube.requestedAt('GitRepository', 'apps', 'app')).toBeUndefined();
    expect(await agent.metrics.registry.metrics()).toMatch(/kasgate_agent_trigger_failures_total\{reason="rejected"\} 1/);
  });

  it('receiver mode: base plus the receiver-mode and service-proxy components do the whole job, through the proxy', async () => {
    h = await createHarness({ rbac: await rulesFromKustomization(base, [receiverMode, serviceProxy]) });
    peer = await new ProtocolPeer(TOKEN).start();
    h.kube.putGitRepository('apps', 'app', { url: 'https://gitlab.example.com/group/app.git', ref: { branch: 'main' } });
    h.kube.putOciRepository('apps', 'manifests', { url: `oci://${REGISTRY_HOST}/group/app/manifests` });
    peer.helloConfig = { flux: { webhookReceiverUrl: '/api/v1/namespaces/flux-system/services/webhook-receiver:80/proxy' } };
    await h.startAgent({ gatewayUrl: peer.url, agentToken: TOKEN, triggerMode: 'receiver' });
    const conn = await peer.connection(0);
    await conn.nextFrame('subscribe');
    conn.send(push('1', 'group/app', 'refs/heads/main'));
    conn.send(tagPush('2', 'group/app/manifests', 'latest'));
    await waitFor(() => h.receiver.calls.length === 2, 5000, 'the Receiver calls');
    expect(h.kube.forbidden).toEqual([]);
    expect(h.kube.receivers.size).toBe(2);
    expect(h.kube.proxied).toBe(2);
    expect(h.kube.sourcePatches).toEqual([]);
  });

  it('receiver mode is really enforced: with the base rules only, no Secret can be read or created', async () => {
    h = await createHarness({ rbac: await rulesFromKustomization(base) });
    peer = await new ProtocolPeer(TOKEN).start();
    h.kube.putGitRepository('apps', 'app', { url: 'https://gitlab.example.com/group/app.git' });
    await h.startAgent({ gatewayUrl: peer.url, agentToken: TOKEN, triggerMode: 'receiver' });
    await (await peer.connection(0)).nextFrame('subscribe');
    await waitFor(() => h.kube.forbidden.length > 0, 5000, 'a forbidden request');
    expect(h.kube.forbidden[0]).toMatchObject({ resource: 'secrets', verb: 'get' });
    expect(h.kube.receivers.size).toBe(0);
  });

  it('receiver mode needs create on Secrets from its component: without it nothing is applied', async () => {
    const rules = (await rulesFromKustomization(base, [receiverMode])).map((rule) =>
      rule.resources?.includes('secrets') ? { ...rule, verbs: rule.verbs.filter((v) => v !== 'create') } : rule,
    );
    h = await createHarness({ rbac: rules });
    peer = await new ProtocolPeer(TOKEN).start();
    h.kube.putGitRepository('apps', 'app', { url: 'https://gitlab.example.com/group/app.git' });
    await h.startAgent({ gatewayUrl: peer.url, agentToken: TOKEN, triggerMode: 'receiver' });
    await (await peer.connection(0)).nextFrame('subscribe');
    await waitFor(() => h.kube.forbidden.length > 0, 5000, 'a forbidden request');
    expect(h.kube.forbidden[0]).toMatchObject({ resource: 'secrets', verb: 'create' });
    expect(h.kube.receivers.size).toBe(0);
  });
});

describe('agent without Flux', () => {
  it('annotate mode waits for the GitRepository CRD only, and reports what is missing', async () => {
    h = await createHarness({ crds: { gitRepositories: false, ociRepositories: false, receivers: false } });
    peer = await new ProtocolPeer(TOKEN).start();
    h.kube.putGitRepository('apps', 'app', { url: 'https://gitlab.example.com/group/app.git' });
    h.kube.putOciRepository('apps', 'manifests', { url: `oci://${REGISTRY_HOST}/group/app/manifests` });
    const agent = await h.startAgent({ gatewayUrl: peer.url, agentToken: TOKEN });
    await settle(500);
    expect(peer.connections).toHaveLength(0);
    const ready = await fetch(`http://127.0.0.1:${agent.healthPort}/readyz`);
    expect(ready.status).toBe(503);
    expect(await ready.json()).toMatchObject({
      ready: false,
      fluxCrds: 'missing',
      missingCrds: ['gitrepositories.source.toolkit.fluxcd.io/v1', 'ocirepositories.source.toolkit.fluxcd.io/v1'],
    });

    // GitRepositories come (the Receiver CRD never does: annotate mode does not need it). The
    // agent works for Git, and says the OCIRepository CRD is still missing (a Flux before 2.6).
    h.kube.crds.gitRepositories = true;
    const conn = await peer.connection(0, 5000);
    expect((await conn.nextFrame('subscribe')).projects).toEqual(['group/app']);
    expect(agent.status()).toMatchObject({ ready: true, fluxCrds: 'found', missingCrds: ['ocirepositories.source.toolkit.fluxcd.io/v1'] });

    // Flux is upgraded: the agent finds OCIRepositories by itself and subscribes to their paths.
    h.kube.crds.ociRepositories = true;
    expect((await conn.nextFrame('subscribe', 1)).projects).toEqual(['group/app', 'group/app/manifests']);
    expect(agent.status()).toMatchObject({ ready: true, missingCrds: [], managedSources: { GitRepository: 1, OCIRepository: 1 } });
  });

  it('receiver mode does nothing until the Receiver CRD exists too', async () => {
    h = await createHarness({ crds: { receivers: false } });
    peer = await new ProtocolPeer(TOKEN).start();
    h.kube.putGitRepository('apps', 'app', { url: 'https://gitlab.example.com/group/app.git' });
    const agent = await h.startAgent({ gatewayUrl: peer.url, agentToken: TOKEN, triggerMode: 'receiver' });
    await settle(500);
    expect(peer.connections).toHaveLength(0);
    expect(h.kube.applies).toHaveLength(0);
    expect(agent.status()).toMatchObject({ ready: false, fluxCrds: 'missing', missingCrds: ['receivers.notification.toolkit.fluxcd.io/v1'] });

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

  it('reads its token from a file, as deploy/agent mounts it, stops cleanly on SIGTERM, and never logs the token', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'kasgate-agent-token-'));
    const tokenFile = join(dir, 'token');
    await writeFile(tokenFile, `${TOKEN}\n`);
    const { child, output } = runAgentProcess({ KASGATE_AGENT_TOKEN_FILE: tokenFile, KASGATE_REGISTRY_HOST: REGISTRY_HOST });
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
      expect(output()).toContain('"triggerMode":"annotate"');
    } finally {
      child.kill('SIGKILL');
      await rm(dir, { recursive: true, force: true });
    }
  }, 30_000);

  it('exits with an error naming the variable on bad configuration', async () => {
    const { child, output } = runAgentProcess({ KASGATE_AGENT_TOKEN: TOKEN, KASGATE_URL: 'not a url' });
    const [code] = (await once(child, 'exit')) as [number | null];
    expect(code).not.toBe(0);
    expect(output()).toContain('KASGATE_URL');
  }, 30_000);

  it('exits naming KASGATE_TRIGGER_MODE when it is neither annotate nor receiver', async () => {
    const { child, output } = runAgentProcess({ KASGATE_AGENT_TOKEN: TOKEN, KASGATE_TRIGGER_MODE: 'webhook' });
    const [code] = (await once(child, 'exit')) as [number | null];
    expect(code).not.toBe(0);
    expect(output()).toContain('KASGATE_TRIGGER_MODE must be annotate or receiver');
    expect(output()).not.toMatch(/\n\s+at /); // one line, no stack trace
  }, 30_000);
});
