/**
 * The whole way back with the real agent: a webhook reaches the gateway, the agent (in process,
 * against the Kubernetes and Flux stand-ins) makes Flux reconcile, reports what Flux did, and the
 * gateway shows the deployment's timeline and posts the commit statuses to the GitLab stand-in.
 * test/deployments/ drives the gateway with a scripted agent; here nothing between GitLab and
 * Flux is scripted.
 */
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { pushBody } from '../support/fixtures.js';
import { startGateway, type TestGateway } from '../support/gateway.js';
import { startFakeGitLab, type FakeGitLab } from '../support/fake-gitlab.js';
import { eventually } from '../support/agent-client.js';
import { postRegistry, REGISTRY_SECRET, registryEnv, registryEvent } from '../registry/support.js';
import { newProject, timelineOf, waitForStatuses, type EventView, type Project } from '../deployments/support.js';
import { createHarness, GITLAB_URL, REGISTRY_HOST, type Harness } from './support/harness.js';
import { waitFor } from './support/wait.js';

const sha = (label: string): string => createHash('sha1').update(`${label} ${randomUUID()}`).digest('hex');

let gitlab: FakeGitLab;
let gateway: TestGateway;
let h: Harness;

beforeEach(async () => {
  gitlab = await startFakeGitLab();
  gateway = await startGateway({
    env: { KASGATE_GITLAB_URL: gitlab.url, KASGATE_GITLAB_TOKEN: gitlab.token, ...registryEnv },
  });
  h = await createHarness({ controllers: { stepMs: 10 } });
});

afterEach(async () => {
  await h?.close();
  await gateway?.close();
  await gitlab?.close();
});

async function eventView(id: string): Promise<EventView> {
  const { status, body } = await gateway.admin<EventView>('GET', `/events/${id}`);
  expect(status).toBe(200);
  return body;
}

function deploymentsReach(id: string, states: Record<string, string>, timeoutMs = 15_000): Promise<EventView> {
  return eventually(
    () => eventView(id),
    (e) => Object.entries(states).every(([name, state]) => e.deployments.some((d) => d.object.name === name && d.state === state)),
    timeoutMs,
  );
}

async function postPush(project: Project, after: string): Promise<string> {
  const response = await gateway.postWebhook(pushBody({ projectId: project.id, path: project.path, visibility: 0, ref: 'refs/heads/main', after }), {
    'idempotency-key': randomUUID(),
  });
  expect(response.status).toBe(202);
  return ((await response.json()) as { eventId: string }).eventId;
}

/** A project with a GitRepository on main and a Kustomization on it, applied at `head`, and the agent running. */
async function clusterOn(project: Project, agentName: string, head: string, kustomizations: string[]): Promise<{ agentId: string; token: string }> {
  h.kube.flux!.setGitHead(project.path, 'main', head);
  h.kube.putGitRepository('apps', 'app', { url: `${GITLAB_URL}/${project.path}.git`, ref: { branch: 'main' } });
  for (const name of kustomizations) h.kube.putKustomization('apps', name, { sourceRef: { kind: 'GitRepository', name: 'app' } });
  await waitFor(() => kustomizations.every((k) => h.kube.get('Kustomization', 'apps', k)?.['status']?.lastAppliedRevision === `main@sha1:${head}`), 10_000, 'Flux to apply the first commit');
  const agent = await gateway.createAgent(agentName, project.path);
  await h.startAgent({ gatewayUrl: gateway.url, agentToken: agent.token, statusBatchMs: 100 });
  await eventually(
    () => gateway.admin<{ objects: unknown[] }>('GET', `/agents/${agent.id}/objects`),
    (r) => r.body.objects.length === 1 + kustomizations.length,
    10_000,
  );
  return { agentId: agent.id, token: agent.token };
}

describe('the way back, with the real agent and Flux stand-ins', () => {
  it('a push: Flux fetches and applies it, the event shows pending → fetched → applied, and GitLab gets running then success', async () => {
    const project = newProject(gitlab);
    const { agentId } = await clusterOn(project, `back-${project.id}`, sha('first'), ['apps', 'infra']);

    const pushed = sha('pushed');
    h.kube.flux!.setGitHead(project.path, 'main', pushed);
    const eventId = await postPush(project, pushed);
    const done = await deploymentsReach(eventId, { apps: 'applied', infra: 'applied' });

    expect(done.deliveries.map((d) => d.agent.id)).toEqual([agentId]);
    for (const d of done.deployments) {
      expect(d).toMatchObject({ object: { kind: 'Kustomization', namespace: 'apps' }, revision: `main@sha1:${pushed}`, commitSha: pushed });
      expect(timelineOf(d)).toEqual(['pending', 'fetched', 'applied']);
      expect(d.latencyMs).toBeGreaterThan(0);
    }
    // Flux was asked once, by annotation, for the one source the push moved.
    expect(h.kube.requestedAt('GitRepository', 'apps', 'app')).toBeDefined();
    const name = (k: string) => `kasgate/back-${project.id}/Kustomization/apps/${k}`;
    await waitForStatuses(gitlab, pushed, { [name('apps')]: ['running', 'success'], [name('infra')]: ['running', 'success'] }, 10_000);
  });

  it("a failing apply ends failed with Flux's own message, on the event and on the commit", async () => {
    const project = newProject(gitlab);
    await clusterOn(project, `fails-${project.id}`, sha('first'), ['apps']);

    const broken = sha('broken');
    h.kube.flux!.setGitHead(project.path, 'main', broken);
    h.kube.flux!.failApply('Kustomization', 'apps', 'apps', 'Deployment/apps/web dry-run failed: spec.replicas: Invalid value: -1');
    const eventId = await postPush(project, broken);
    const done = await deploymentsReach(eventId, { apps: 'failed' });
    expect(done.deployments[0]).toMatchObject({ state: 'failed', reason: 'ReconciliationFailed' });
    expect(done.deployments[0]!.message).toContain('spec.replicas: Invalid value: -1');
    await waitForStatuses(gitlab, broken, { [`kasgate/fails-${project.id}/Kustomization/apps/apps`]: ['running', 'failed'] }, 10_000);
    expect(gitlab.statusesOf(broken).find((s) => s.state === 'failed')?.description).toContain('spec.replicas: Invalid value: -1');
  });

  it('two agent pods on one token report one set of objects; when one pod goes, nothing is lost or doubled', async () => {
    const project = newProject(gitlab);
    const { agentId, token } = await clusterOn(project, `pods-${project.id}`, sha('first'), ['apps']);
    const second = await h.startAgent({ gatewayUrl: gateway.url, agentToken: token, statusBatchMs: 100 });
    await eventually(
      () => gateway.admin<{ connections: unknown[] }>('GET', `/agents/${agentId}/connections`),
      (r) => r.body.connections.length === 2,
      10_000,
    );
    type Objects = { objects: { kind: string; name: string; stale?: boolean }[] };
    const objects = async () => (await gateway.admin<Objects>('GET', `/agents/${agentId}/objects`)).body.objects;
    await new Promise((r) => setTimeout(r, 500));
    expect((await objects()).map((o) => `${o.kind}/${o.name}`).sort()).toEqual(['GitRepository/app', 'Kustomization/apps']);

    await second.close();
    await eventually(
      () => gateway.admin<{ connections: unknown[] }>('GET', `/agents/${agentId}/connections`),
      (r) => r.body.connections.length === 1,
      10_000,
    );
    const after = await objects();
    expect(after.map((o) => `${o.kind}/${o.name}`).sort()).toEqual(['GitRepository/app', 'Kustomization/apps']);
    // The first pod still reports them live.
    expect(after.every((o) => o.stale !== true)).toBe(true);
  });

  it('a tag pushed to the registry: the OCIRepository on that tag reconciles, and the commit the artifact was built from gets success', async () => {
    const project = newProject(gitlab);
    const repository = `${project.path}/manifests`;
    const built = sha('built');
    const firstDigest = randomBytes(32).toString('hex');
    h.kube.flux!.setOciTag(repository, 'stable', { digest: `sha256:${firstDigest}` });
    h.kube.putOciRepository('apps', 'manifests', { url: `oci://${REGISTRY_HOST}/${repository}`, ref: { tag: 'stable' } });
    h.kube.putKustomization('apps', 'prod', { sourceRef: { kind: 'OCIRepository', name: 'manifests' } });
    await waitFor(() => Boolean(h.kube.get('Kustomization', 'apps', 'prod')?.['status']?.lastAppliedRevision), 10_000, 'Flux to apply the first artifact');
    const agent = await gateway.createAgent(`oci-${project.id}`, project.path);
    await h.startAgent({ gatewayUrl: gateway.url, agentToken: agent.token, statusBatchMs: 100 });
    // The registry names a repository; kasgate learns the project (and its visibility) from a push.
    await postPush(project, sha('seen'));
    await eventually(() => gateway.admin<{ objects: unknown[] }>('GET', `/agents/${agent.id}/objects`), (r) => r.body.objects.length === 2, 10_000);

    const digest = randomBytes(32).toString('hex');
    h.kube.flux!.setOciTag(repository, 'stable', { digest: `sha256:${digest}`, revision: `main@sha1:${built}`, source: `${gitlab.url}/${project.path}` });
    const response = await postRegistry(gateway, { events: [registryEvent({ repository, tag: 'stable', digest: `sha256:${digest}` })] }, { authorization: REGISTRY_SECRET });
    expect(response.status).toBe(202);
    const { eventId } = (await response.json()) as { eventId: string };
    const done = await deploymentsReach(eventId, { prod: 'applied' });
    expect(done.deployments[0]).toMatchObject({ commitSha: built, revision: `stable@sha256:${digest}` });
    await waitForStatuses(gitlab, built, { [`kasgate/oci-${project.id}/Kustomization/apps/prod`]: ['running', 'success'] }, 10_000);
  });
});
