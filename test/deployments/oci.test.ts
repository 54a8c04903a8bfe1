/**
 * OCI artifacts followed to the cluster and back: a successful pipeline, or a tag pushed to the
 * registry, reaches the agent as an artifact frame; the agent reports its OCIRepository fetched
 * (with the artifact's origin metadata) and the Kustomization on it applied; the deployment's
 * timeline shows it, and the commit status lands on the commit the artifact was built from
 * (org.opencontainers.image.revision / .source), as a developer who pushed Git expects.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { describe, expect, test } from 'vitest';
import { useGateway } from '../support/gateway.js';
import { useFakeGitLab } from '../support/use-fake-gitlab.js';
import { fixtures } from '../support/fixtures.js';
import { kustomization, newSha, type ObjectInput } from '../support/flux-status.js';
import type { TestAgent } from '../support/agent-client.js';
import { postRegistry, registryEnv, registryEvent } from '../registry/support.js';
import { newProject, push, reportingAgent, timelineOf, waitForStates, waitForStatuses, type Project } from './support.js';

const REGISTRY = 'registry.example.com';

/** An OCIRepository on `repository`; once `digest` is set, its artifact and where it was built from. */
function ociRepository(
  name: string,
  options: { repository: string; tag?: string; digest?: string; origin?: { gitlabUrl: string; project: string; sha: string } },
): ObjectInput {
  const tag = options.tag ?? 'latest';
  return {
    kind: 'OCIRepository',
    namespace: 'flux-system',
    name,
    ready: options.digest ? 'True' : 'Unknown',
    reason: options.digest ? 'Succeeded' : 'Progressing',
    revision: options.digest ? `${tag}@sha256:${options.digest}` : null,
    originRevision: options.origin ? `main@sha1:${options.origin.sha}` : null,
    originSource: options.origin ? `${options.origin.gitlabUrl}/${options.origin.project}` : null,
    url: `oci://${REGISTRY}/${options.repository}`,
    project: options.repository,
    ref: { tag },
    updatedAt: new Date().toISOString(),
  };
}

/** A Kustomization on an OCI source, Ready True at the source's revision. */
function appliedOn(name: string, source: ObjectInput): ObjectInput {
  const k = kustomization(name, { source: { ...source, ref: { branch: 'main' } } });
  return { ...k, ready: 'True', reason: 'ReconciliationSucceeded', message: `Applied revision: ${source.revision}`, revision: source.revision, attemptedRevision: source.revision };
}

async function pipelineSucceeded(gw: ReturnType<typeof useGateway>, agent: TestAgent, project: Project, sha: string): Promise<string> {
  const body = JSON.parse(fixtures.pipeline.raw.toString());
  body.project.id = project.id;
  body.project.path_with_namespace = project.path;
  body.project.visibility_level = 0;
  body.object_attributes.sha = sha;
  body.object_attributes.ref = 'main';
  body.object_attributes.tag = false;
  body.object_attributes.status = 'success';
  const res = await gw.postWebhook(body, { 'x-gitlab-event': 'Pipeline Hook', 'idempotency-key': randomUUID() });
  expect(res.status).toBe(202);
  const { eventId } = (await res.json()) as { eventId: string };
  await agent.waitFor((f) => f.type === 'artifact' && f.eventId === eventId);
  return eventId;
}

describe('OCI deployments and commit statuses', () => {
  const fake = useFakeGitLab();
  const gw = useGateway({ env: fake.env(registryEnv) });

  test('a successful pipeline: pending → fetched → applied, and success on the commit the artifact was built from', async () => {
    const project = newProject(fake.gitlab);
    const { agent, reporter } = await reportingAgent(gw, 'oci-pipe', project);
    const repository = `${project.path}/manifests`;
    const old = randomBytes(32).toString('hex');
    const before = ociRepository('manifests', { repository, digest: old });
    reporter.put(before, appliedOn('apps', before)).full();
    await new Promise((r) => setTimeout(r, 200));

    const sha = newSha();
    const eventId = await pipelineSucceeded(gw, agent, project, sha);
    await waitForStates(gw, eventId, { apps: 'pending' });

    const digest = randomBytes(32).toString('hex');
    const fetched = ociRepository('manifests', { repository, digest, origin: { gitlabUrl: fake.gitlab.url, project: project.path, sha } });
    reporter.update(fetched);
    await waitForStates(gw, eventId, { apps: 'fetched' });
    reporter.update(appliedOn('apps', fetched));
    const done = await waitForStates(gw, eventId, { apps: 'applied' });
    expect(done.deployments[0]).toMatchObject({
      object: { kind: 'Kustomization', namespace: 'flux-system', name: 'apps' },
      source: { kind: 'OCIRepository', namespace: 'flux-system', name: 'manifests' },
      state: 'applied',
      commitSha: sha,
    });
    expect(timelineOf(done.deployments[0]!)).toEqual(['pending', 'fetched', 'applied']);

    const name = `kasgate/oci-pipe-${project.id}/Kustomization/flux-system/apps`;
    await waitForStatuses(fake.gitlab, sha, { [name]: ['running', 'success'] });
    expect(fake.gitlab.statusesOf(sha).every((s) => s.projectId === project.id)).toBe(true);
    await agent.close();
  });

  test('a tag pushed to the registry deploys through the OCIRepository that follows that tag, and no other', async () => {
    const project = newProject(fake.gitlab);
    const { agent, reporter } = await reportingAgent(gw, 'oci-reg', project);
    const repository = `${project.path}/manifests`;
    const stable = ociRepository('stable', { repository, tag: 'stable', digest: randomBytes(32).toString('hex') });
    const canary = ociRepository('canary', { repository, tag: 'canary', digest: randomBytes(32).toString('hex') });
    reporter.put(stable, appliedOn('prod', stable), canary, appliedOn('preview', canary)).full();
    // The registry names a repository; kasgate knows its project (and visibility) from a push seen before.
    await push(gw, agent, project, newSha());

    const digest = randomBytes(32).toString('hex');
    const res = await postRegistry(gw, { events: [registryEvent({ repository, tag: 'canary', digest: `sha256:${digest}` })] });
    expect(res.status).toBe(202);
    const { eventId } = (await res.json()) as { eventId: string };
    await agent.waitFor((f) => f.type === 'artifact' && f.eventId === eventId);
    const pending = await waitForStates(gw, eventId, { preview: 'pending' });
    expect(pending.deployments.map((d) => d.object.name)).toEqual(['preview']);

    const sha = newSha();
    const fetched = ociRepository('canary', { repository, tag: 'canary', digest, origin: { gitlabUrl: fake.gitlab.url, project: project.path, sha } });
    reporter.update(fetched);
    reporter.update(appliedOn('preview', fetched));
    const done = await waitForStates(gw, eventId, { preview: 'applied' });
    expect(done.deployments[0]).toMatchObject({ state: 'applied', commitSha: sha, revision: `canary@sha256:${digest}` });
    await waitForStatuses(fake.gitlab, sha, { [`kasgate/oci-reg-${project.id}/Kustomization/flux-system/preview`]: ['running', 'success'] });
    await agent.close();
  });

  test('a Git push to the project does not open an OCI deployment', async () => {
    const project = newProject(fake.gitlab);
    const { agent, reporter } = await reportingAgent(gw, 'oci-git', project);
    const source = ociRepository('manifests', { repository: `${project.path}/manifests`, digest: randomBytes(32).toString('hex') });
    reporter.put(source, appliedOn('apps', source)).full();
    await new Promise((r) => setTimeout(r, 200));
    const eventId = await push(gw, agent, project, newSha());
    await new Promise((r) => setTimeout(r, 500));
    const { body } = await gw.admin('GET', `/events/${eventId}`);
    expect(body.deployments).toEqual([]);
    await agent.close();
  });
});
