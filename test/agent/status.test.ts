/**
 * Status reporting (issue 11, agent side): the agent in-process against the test API server,
 * whose Flux controller stand-ins move status as Flux does, and a scripted kasgate.v1 peer. The
 * peer's view (support/status-view.ts) is what a gateway would know from the frames.
 */
import { createHash } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { AgentConfig } from '../../src/agent/config.js';
import type { PushFrame, ReportedObject } from '../../src/protocol/kasgate-v1.js';
import { REGISTRY_HOST, createHarness, type Harness } from './support/harness.js';
import { ProtocolPeer, type PeerConnection } from './support/protocol-peer.js';
import { viewOf } from './support/status-view.js';
import { settle, waitFor } from './support/wait.js';

const TOKEN = 'kgagent_status-0123456789abcdef';
/** A commit sha per number (distinct from the first characters on, as real ones are). */
const sha = (n: number): string => createHash('sha1').update(`commit ${n}`).digest('hex');
const DIGEST = `sha256:${'ab'.repeat(32)}`;
const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/;

let h: Harness;
let peer: ProtocolPeer;

beforeEach(async () => {
  h = await createHarness({ controllers: { stepMs: 10 } });
  peer = await new ProtocolPeer(TOKEN).start();
  peer.answerSubscribes = true;
});

afterEach(async () => {
  await h.close();
  await peer.close();
});

const flux = () => h.kube.flux!;

function push(eventId: string, path: string, ref: string, after: string): PushFrame {
  return { type: 'push', eventId, project: { id: 1, path, defaultBranch: 'main' }, ref, before: sha(0), after, receivedAt: new Date().toISOString() };
}

/** Waits until the controllers have nothing left to do (every object has handled its generation). */
async function fluxSettled(): Promise<void> {
  await waitFor(
    () =>
      [h.kube.gitRepositories, h.kube.ociRepositories, h.kube.kustomizations, h.kube.helmReleases].every((map) =>
        [...map.values()].every((o) => o['spec']?.suspend === true || o['status']?.observedGeneration === o.metadata['generation']),
      ),
    5000,
    'the Flux stand-ins to settle',
  );
  await settle(50);
}

/** A cluster with managed and unmanaged sources, and objects on each. */
function addCluster(): void {
  flux().setGitHead('group/app', 'main', sha(1));
  flux().setGitHead('group/other', 'main', sha(7));
  flux().setOciTag('group/app/manifests', 'latest', { digest: DIGEST, revision: `main@sha1:${sha(2)}`, source: 'https://gitlab.example.com/group/app.git' });
  h.kube.putGitRepository('apps', 'app', { url: 'https://gitlab.example.com/group/app.git', ref: { branch: 'main' } });
  h.kube.putGitRepository('apps', 'github', { url: 'https://github.com/group/other.git', ref: { branch: 'main' } });
  h.kube.putOciRepository('apps', 'manifests', { url: `oci://${REGISTRY_HOST}/group/app/manifests` });
  h.kube.putOciRepository('apps', 'elsewhere', { url: 'oci://ghcr.io/group/app/manifests' });
  h.kube.putKustomization('apps', 'app', { sourceRef: { kind: 'GitRepository', name: 'app' }, path: './deploy' });
  h.kube.putKustomization('team', 'app-from-apps', { sourceRef: { kind: 'GitRepository', name: 'app', namespace: 'apps' } });
  h.kube.putKustomization('apps', 'manifests', { sourceRef: { kind: 'OCIRepository', name: 'manifests' } });
  h.kube.putKustomization('apps', 'github', { sourceRef: { kind: 'GitRepository', name: 'github' } });
  h.kube.putKustomization('apps', 'bucket', { sourceRef: { kind: 'Bucket', name: 'app' } });
  h.kube.putKustomization('team', 'same-name-other-ns', { sourceRef: { kind: 'GitRepository', name: 'app' } });
  h.kube.putHelmRelease('apps', 'chart-from-git', {
    chart: { spec: { chart: './charts/app', sourceRef: { kind: 'GitRepository', name: 'app' } } },
  });
  h.kube.putHelmRelease('apps', 'chart-from-oci', { chartRef: { kind: 'OCIRepository', name: 'manifests' } });
  h.kube.putHelmRelease('apps', 'chart-from-helmchart', { chartRef: { kind: 'HelmChart', name: 'app' } });
  h.kube.putHelmRelease('apps', 'chart-from-helmrepo', {
    chart: { spec: { chart: 'podinfo', sourceRef: { kind: 'HelmRepository', name: 'podinfo' } } },
  });
}

const MANAGED = [
  'GitRepository/apps/app',
  'HelmRelease/apps/chart-from-git',
  'HelmRelease/apps/chart-from-oci',
  'Kustomization/apps/app',
  'Kustomization/apps/manifests',
  'Kustomization/team/app-from-apps',
  'OCIRepository/apps/manifests',
];

async function connectAgent(overrides: Partial<AgentConfig> = {}): Promise<PeerConnection> {
  await h.startAgent({ gatewayUrl: peer.url, agentToken: TOKEN, ...overrides });
  return peer.connection(peer.connections.length);
}

const fullSetArrived = (conn: PeerConnection, sets = 1) => waitFor(() => viewOf(conn).fullSets >= sets, 5000, 'the full set');

describe('status frames', () => {
  it('sends the full set of the managed sources and the objects on them once subscribed, with what Flux says', async () => {
    addCluster();
    await fluxSettled();
    peer.answerSubscribes = false;
    const conn = await connectAgent();
    const subscribe = await conn.nextFrame('subscribe');
    await settle(300);
    expect(conn.framesOf('status')).toEqual([]); // nothing before the gateway answers the subscribe
    conn.send({ type: 'subscribed', projects: subscribe.projects.map((path) => ({ path, access: 'granted' as const })) });
    await fullSetArrived(conn);

    const [full] = conn.framesOf('status');
    expect(full).toMatchObject({ type: 'status', full: true, truncated: false });
    expect(full?.part).toBeUndefined();
    const view = viewOf(conn);
    expect(view.keys()).toEqual(MANAGED);

    expect(view.get('GitRepository/apps/app')).toEqual({
      kind: 'GitRepository',
      namespace: 'apps',
      name: 'app',
      ready: 'True',
      reason: 'Succeeded',
      message: `stored artifact for revision 'main@sha1:${sha(1)}'`,
      revision: `main@sha1:${sha(1)}`,
      originRevision: null,
      originSource: null,
      attemptedRevision: null,
      sourceRef: null,
      url: 'https://gitlab.example.com/group/app.git',
      project: 'group/app',
      ref: { branch: 'main' },
      suspended: false,
      updatedAt: expect.stringMatching(ISO),
    });
    expect(view.get('OCIRepository/apps/manifests')).toMatchObject({
      ready: 'True',
      revision: `latest@${DIGEST}`,
      originRevision: `main@sha1:${sha(2)}`,
      originSource: 'https://gitlab.example.com/group/app.git',
      url: `oci://${REGISTRY_HOST}/group/app/manifests`,
      project: 'group/app/manifests', // the repository path: the gateway resolves which prefix is the project
      ref: null,
    });
    expect(view.get('Kustomization/apps/app')).toMatchObject({
      ready: 'True',
      reason: 'ReconciliationSucceeded',
      message: `Applied revision: main@sha1:${sha(1)}`,
      revision: `main@sha1:${sha(1)}`,
      attemptedRevision: `main@sha1:${sha(1)}`,
      sourceRef: { kind: 'GitRepository', namespace: 'apps', name: 'app' },
      url: null,
      project: null,
      updatedAt: expect.stringMatching(ISO),
    });
    expect(view.get('Kustomization/team/app-from-apps')?.sourceRef).toEqual({ kind: 'GitRepository', namespace: 'apps', name: 'app' });
    expect(view.get('Kustomization/apps/manifests')).toMatchObject({
      revision: `latest@${DIGEST}`,
      originRevision: `main@sha1:${sha(2)}`,
      sourceRef: { kind: 'OCIRepository', namespace: 'apps', name: 'manifests' },
    });
    expect(view.get('HelmRelease/apps/chart-from-git')).toMatchObject({
      ready: 'True',
      reason: 'InstallSucceeded',
      revision: `1.0.0+${sha(1).slice(0, 12)}`,
      attemptedRevision: `1.0.0+${sha(1).slice(0, 12)}`,
      sourceRef: { kind: 'GitRepository', namespace: 'apps', name: 'app' },
    });
    expect(view.get('HelmRelease/apps/chart-from-oci')).toMatchObject({
      sourceRef: { kind: 'OCIRepository', namespace: 'apps', name: 'manifests' },
      revision: `1.0.0+${'ab'.repeat(6)}`,
    });
    // Absent fields are left out of the frame (the schema reads them as null), so frames stay small.
    expect(conn.raw.find((r) => r.text.includes('"status"'))?.text).not.toContain('null');
    expect(conn.invalid).toEqual([]);
  });

  it('follows a push through Flux: the source fetches the new commit and the Kustomization applies it, in one batch within a second', async () => {
    addCluster();
    await fluxSettled();
    const conn = await connectAgent({ statusBatchMs: 1000 });
    await fullSetArrived(conn);
    const before = conn.framesOf('status').length;

    flux().setGitHead('group/app', 'main', sha(3));
    const sent = Date.now();
    conn.send(push('10', 'group/app', 'refs/heads/main', sha(3)));
    await waitFor(() => conn.framesOf('status').length > before, 3000, 'the change frame');
    const elapsed = (conn.raw.at(-1)?.at ?? 0) - sent;
    await fluxSettled();
    await settle(1300);

    // Source Reconciling → Ready, then the Kustomization and HelmRelease on it: Flux took well under
    // a second, so the agent sent it all in the one frame that the first change opened.
    const changes = conn.framesOf('status').slice(before);
    expect(changes).toHaveLength(1);
    expect(changes[0]).toMatchObject({ full: false, truncated: false });
    expect(elapsed).toBeGreaterThanOrEqual(900);
    expect(elapsed).toBeLessThan(1800);
    const reported = (changes[0]?.objects ?? []).map((o) => `${o.kind}/${o.namespace}/${o.name}`).sort();
    expect(reported).toEqual(['GitRepository/apps/app', 'HelmRelease/apps/chart-from-git', 'Kustomization/apps/app', 'Kustomization/team/app-from-apps']);
    const view = viewOf(conn);
    expect(view.get('GitRepository/apps/app')).toMatchObject({ ready: 'True', revision: `main@sha1:${sha(3)}` });
    expect(view.get('Kustomization/apps/app')).toMatchObject({ ready: 'True', revision: `main@sha1:${sha(3)}`, attemptedRevision: `main@sha1:${sha(3)}` });
    expect(view.get('Kustomization/apps/manifests')?.revision).toBe(`latest@${DIGEST}`); // on the OCI source: untouched
  });

  it('in receiver mode too: the Receiver call makes Flux fetch, and the new state is reported', async () => {
    addCluster();
    await fluxSettled();
    const conn = await connectAgent({ triggerMode: 'receiver' });
    await fullSetArrived(conn);
    await waitFor(() => h.kube.receivers.size === 2, 5000, 'the Receivers');
    flux().setGitHead('group/app', 'main', sha(6));
    conn.send(push('13', 'group/app', 'refs/heads/main', sha(6)));
    await waitFor(() => viewOf(conn).get('Kustomization/apps/app')?.revision === `main@sha1:${sha(6)}`, 5000, 'the new revision applied');
    expect(h.receiver.callsTo('apps', 'kasgate-app')).toHaveLength(1);
    expect(h.kube.sourcePatches).toEqual([]); // the Receiver, not the agent, asked Flux
    expect(viewOf(conn).get('GitRepository/apps/app')).toMatchObject({ ready: 'True', revision: `main@sha1:${sha(6)}` });
  });

  it('reports a failed apply with Flux reason and message, and the recovery', async () => {
    addCluster();
    await fluxSettled();
    const conn = await connectAgent();
    await fullSetArrived(conn);

    const message = 'Deployment/apps/app dry-run failed: spec.replicas: Invalid value: -1: must be greater than or equal to 0';
    flux().failApply('Kustomization', 'apps', 'app', message);
    flux().setGitHead('group/app', 'main', sha(4));
    conn.send(push('11', 'group/app', 'refs/heads/main', sha(4)));
    await waitFor(() => viewOf(conn).get('Kustomization/apps/app')?.ready === 'False', 5000, 'the failure');
    expect(viewOf(conn).get('Kustomization/apps/app')).toMatchObject({
      ready: 'False',
      reason: 'ReconciliationFailed',
      message,
      revision: `main@sha1:${sha(1)}`, // still the last applied one
      attemptedRevision: `main@sha1:${sha(4)}`,
    });

    flux().failApply('Kustomization', 'apps', 'app', undefined);
    flux().setGitHead('group/app', 'main', sha(5));
    conn.send(push('12', 'group/app', 'refs/heads/main', sha(5)));
    await waitFor(() => viewOf(conn).get('Kustomization/apps/app')?.revision === `main@sha1:${sha(5)}`, 5000, 'the recovery');
    expect(viewOf(conn).get('Kustomization/apps/app')).toMatchObject({ ready: 'True', reason: 'ReconciliationSucceeded' });
  });

  it('cuts long messages to the schema limit', async () => {
    addCluster();
    await fluxSettled();
    const conn = await connectAgent();
    await fullSetArrived(conn);
    flux().failApply('Kustomization', 'apps', 'app', `${'x'.repeat(9000)}🚀tail`);
    h.kube.putKustomization('apps', 'app', { sourceRef: { kind: 'GitRepository', name: 'app' }, path: './other' }); // a new generation
    await waitFor(() => viewOf(conn).get('Kustomization/apps/app')?.ready === 'False', 5000, 'the failure');
    const reported = viewOf(conn).get('Kustomization/apps/app') as ReportedObject;
    expect(reported.message).toHaveLength(4096);
    expect(reported.message?.endsWith('x…')).toBe(true);
    expect(conn.invalid).toEqual([]);
  });

  it('reports deletions, and drops the objects of a source that is no longer managed', async () => {
    addCluster();
    await fluxSettled();
    const conn = await connectAgent();
    await fullSetArrived(conn);

    h.kube.deleteSource('Kustomization', 'apps', 'manifests');
    await waitFor(() => !viewOf(conn).get('Kustomization/apps/manifests'), 5000, 'the deletion');
    const deletion = conn
      .framesOf('status')
      .flatMap((f) => f.objects)
      .find((o) => 'deleted' in o);
    expect(deletion).toEqual({ kind: 'Kustomization', namespace: 'apps', name: 'manifests', deleted: true });

    // The GitRepository moves to GitHub: it and everything on it leave the reported set.
    h.kube.putGitRepository('apps', 'app', { url: 'https://github.com/group/app.git', ref: { branch: 'main' } });
    await waitFor(() => !viewOf(conn).get('GitRepository/apps/app'), 5000, 'the source leaving');
    await settle(300);
    expect(viewOf(conn).keys()).toEqual(['HelmRelease/apps/chart-from-oci', 'OCIRepository/apps/manifests']);

    // A Kustomization that turns to a managed source joins.
    h.kube.putKustomization('apps', 'github', { sourceRef: { kind: 'OCIRepository', name: 'manifests' } });
    await waitFor(() => viewOf(conn).get('Kustomization/apps/github') !== undefined, 5000, 'the new object');
    expect(viewOf(conn).get('Kustomization/apps/github')?.sourceRef).toEqual({ kind: 'OCIRepository', namespace: 'apps', name: 'manifests' });
  });

  it('splits a full set larger than maxFrameBytes into parts, and large changes into several frames, each within the limit', async () => {
    peer.helloLimits = { maxFrameBytes: 2048 };
    for (let i = 0; i < 30; i++) {
      flux().setGitHead(`group/app-${i}`, 'main', sha(100 + i));
      h.kube.putGitRepository('apps', `app-${i}`, { url: `https://gitlab.example.com/group/app-${i}.git`, ref: { branch: 'main' } });
      h.kube.putKustomization('apps', `app-${i}`, { sourceRef: { kind: 'GitRepository', name: `app-${i}` } });
    }
    await fluxSettled();
    const conn = await connectAgent();
    await fullSetArrived(conn);

    const statusTexts = () => conn.raw.filter((r) => r.text.startsWith('{"type":"status"')).map((r) => r.text);
    const parts = conn.framesOf('status');
    expect(parts.length).toBeGreaterThan(3);
    expect(parts.map((p) => [p.full, p.part, p.parts])).toEqual(parts.map((_, i) => [true, i + 1, parts.length]));
    for (const text of statusTexts()) expect(Buffer.byteLength(text)).toBeLessThanOrEqual(2048);
    expect(viewOf(conn).objects.size).toBe(60);

    // A resync reconciles all 30 sources at once; their new commits arrive as changes, split.
    for (let i = 0; i < 30; i++) flux().setGitHead(`group/app-${i}`, 'main', sha(200 + i));
    conn.send({ type: 'resync', reason: 'cursor_expired' });
    await waitFor(() => [...viewOf(conn).objects.values()].every((o) => o.revision === `main@sha1:${sha(200 + Number(o.name.slice(4)))}`), 8000, 'all new revisions');
    const changeFrames = conn.framesOf('status').filter((f) => !f.full);
    expect(changeFrames.length).toBeGreaterThan(1);
    for (const text of statusTexts()) expect(Buffer.byteLength(text)).toBeLessThanOrEqual(2048);
    expect(conn.invalid).toEqual([]);
  });

  it('reports at most maxStatusObjects, says truncated, and lets others in as room appears', async () => {
    peer.helloLimits = { maxFrameBytes: 65536, maxStatusObjects: 3 };
    flux().setGitHead('group/app', 'main', sha(1));
    h.kube.putGitRepository('apps', 'app', { url: 'https://gitlab.example.com/group/app.git', ref: { branch: 'main' } });
    for (const name of ['a', 'b', 'c', 'd']) h.kube.putKustomization('apps', name, { sourceRef: { kind: 'GitRepository', name: 'app' } });
    await fluxSettled();
    const conn = await connectAgent();
    await fullSetArrived(conn);
    expect(conn.framesOf('status')[0]).toMatchObject({ full: true, truncated: true });
    expect(viewOf(conn).keys()).toEqual(['GitRepository/apps/app', 'Kustomization/apps/a', 'Kustomization/apps/b']);
    expect(viewOf(conn).truncated).toBe(true);

    h.kube.deleteSource('Kustomization', 'apps', 'a');
    await waitFor(() => viewOf(conn).get('Kustomization/apps/c') !== undefined, 5000, 'c to take the room');
    expect(viewOf(conn).keys()).toEqual(['GitRepository/apps/app', 'Kustomization/apps/b', 'Kustomization/apps/c']);
    expect(viewOf(conn).truncated).toBe(true);

    h.kube.deleteSource('Kustomization', 'apps', 'b');
    await waitFor(() => viewOf(conn).get('Kustomization/apps/d') !== undefined, 5000, 'd to take the room');
    expect(viewOf(conn).truncated).toBe(false);
    expect(viewOf(conn).objects.size).toBe(3);
  });

  it('sends the full set again on every reconnect, with what changed meanwhile', async () => {
    addCluster();
    await fluxSettled();
    const agent = await h.startAgent({ gatewayUrl: peer.url, agentToken: TOKEN });
    const first = await peer.connection(0);
    await fullSetArrived(first);
    first.close(1012, 'replica shutting down');

    h.kube.deleteSource('HelmRelease', 'apps', 'chart-from-oci');
    h.kube.putHelmRelease('apps', 'chart-from-git', {
      suspend: true,
      chart: { spec: { chart: './charts/app', sourceRef: { kind: 'GitRepository', name: 'app' } } },
    });
    const second = await peer.connection(1);
    await fullSetArrived(second);
    const view = viewOf(second);
    expect(view.keys()).toEqual(MANAGED.filter((k) => k !== 'HelmRelease/apps/chart-from-oci'));
    expect(view.get('HelmRelease/apps/chart-from-git')?.suspended).toBe(true);
    expect(second.framesOf('status')[0]?.full).toBe(true);
    expect(await agent.metrics.registry.metrics()).toMatch(/kasgate_agent_status_objects\{kind="Kustomization"\} 3/);
  });

  it('sends the full set again when the gateway says it lost the parts (status_part_out_of_order)', async () => {
    addCluster();
    await fluxSettled();
    const conn = await connectAgent();
    await fullSetArrived(conn);
    conn.send({ type: 'error', code: 'status_part_out_of_order', message: 'status part 2 of 3 does not continue the full set; send the full set again from part 1' });
    await fullSetArrived(conn, 2);
    expect(viewOf(conn).keys()).toEqual(MANAGED);
    // Any other error does not.
    conn.send({ type: 'error', code: 'invalid_frame', message: 'objects.0.kind: invalid' });
    await settle(400);
    expect(viewOf(conn).fullSets).toBe(2);
  });

  it('two agents (two pods) each send their own full set', async () => {
    addCluster();
    await fluxSettled();
    await h.startAgent({ gatewayUrl: peer.url, agentToken: TOKEN });
    await h.startAgent({ gatewayUrl: peer.url, agentToken: TOKEN });
    const [a, b] = [await peer.connection(0), await peer.connection(1)];
    await fullSetArrived(a);
    await fullSetArrived(b);
    expect(viewOf(a).keys()).toEqual(MANAGED);
    expect(viewOf(b).keys()).toEqual(MANAGED);
  });
});

describe('status without helm-controller', () => {
  it('reports sources and Kustomizations, and HelmReleases once their CRD appears', async () => {
    await h.close();
    h = await createHarness({ controllers: { stepMs: 10 }, crds: { helmReleases: false } });
    addCluster();
    await fluxSettled();
    const agent = await h.startAgent({ gatewayUrl: peer.url, agentToken: TOKEN });
    const conn = await peer.connection(0);
    await fullSetArrived(conn);
    expect(viewOf(conn).keys()).toEqual(MANAGED.filter((k) => !k.startsWith('HelmRelease/')));
    expect(agent.status()).toMatchObject({ ready: true, missingCrds: ['helmreleases.helm.toolkit.fluxcd.io/v2'] });

    h.kube.crds.helmReleases = true;
    await waitFor(() => viewOf(conn).get('HelmRelease/apps/chart-from-git') !== undefined, 5000, 'the HelmReleases');
    expect(viewOf(conn).keys()).toEqual(MANAGED);
    expect(agent.status().missingCrds).toEqual([]);
  });
});
