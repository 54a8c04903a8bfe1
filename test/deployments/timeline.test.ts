/**
 * Pushes followed to the cluster and back: webhook → push frame → the agent reports its source
 * fetched and its Kustomizations applied (or failed) → GET /api/v1/events/{id} shows the
 * timeline, and the GitLab stand-in recorded the commit statuses.
 */
import { describe, expect, test } from 'vitest';
import { useGateway } from '../support/gateway.js';
import { useFakeGitLab } from '../support/use-fake-gitlab.js';
import { eventually } from '../support/agent-client.js';
import { gitRepository, kustomization, newSha } from '../support/flux-status.js';
import { pushBody } from '../support/fixtures.js';
import { eventOf, metric, newProject, push, pushTag, reportingAgent, timelineOf, waitForStates, waitForStatuses } from './support.js';

const PUBLIC_URL = 'https://kasgate.example.com';

describe('deployments and commit statuses', () => {
  const fake = useFakeGitLab();
  const gw = useGateway({ env: fake.env({ KASGATE_PUBLIC_URL: PUBLIC_URL }) });

  test('one push followed end to end: pending → fetched → applied per Kustomization, running then success on GitLab', async () => {
    const project = newProject(fake.gitlab);
    const { id: agentId, agent, reporter } = await reportingAgent(gw, 'e2e', project);
    const before = newSha();
    const source = gitRepository('app', { project: project.path, sha: before });
    const apps = kustomization('apps', { source, applied: before });
    const infra = kustomization('infra', { source, applied: before });
    reporter.put(source, apps, infra).full();
    await eventually(() => gw.admin('GET', `/agents/${agentId}/objects`), (r) => r.body.objects.length === 3);
    const appliedBefore = await metric(gw, /^kasgate_deployments_finished_total\{state="applied"\}/);

    const sha = newSha();
    const eventId = await push(gw, agent, project, sha);
    const pending = await waitForStates(gw, eventId, { apps: 'pending', infra: 'pending' });
    expect(pending.deliveries).toEqual([{ agent: { id: agentId, name: `e2e-${project.id}` }, at: expect.any(String) }]);

    // What Flux does: the source fetches the commit, then each Kustomization applies it.
    const fetched = gitRepository('app', { project: project.path, sha });
    reporter.update(fetched);
    await waitForStates(gw, eventId, { apps: 'fetched', infra: 'fetched' });
    reporter.update(kustomization('apps', { source: fetched, applied: sha }));
    reporter.update(kustomization('infra', { source: fetched, applied: sha }));
    const done = await waitForStates(gw, eventId, { apps: 'applied', infra: 'applied' });

    expect(done.deployments).toHaveLength(2);
    for (const d of done.deployments) {
      expect(d).toMatchObject({
        agent: { id: agentId, name: `e2e-${project.id}` },
        object: { kind: 'Kustomization', namespace: 'flux-system' },
        source: { kind: 'GitRepository', namespace: 'flux-system', name: 'app' },
        state: 'applied',
        revision: `main@sha1:${sha}`,
        reason: 'ReconciliationSucceeded',
        commitSha: sha,
      });
      expect(timelineOf(d)).toEqual(['pending', 'fetched', 'applied']);
      const times = d.timeline.map((t) => Date.parse(t.at));
      expect(times).toEqual([...times].sort((a, b) => a - b));
      expect(d.at).toBe(d.timeline.at(-1)!.at);
      // From the webhook's arrival to the outcome.
      expect(d.latencyMs).toBe(Date.parse(d.at) - Date.parse(done.receivedAt));
      expect(d.latencyMs).toBeGreaterThan(0);
    }

    const name = (k: string) => `kasgate/e2e-${project.id}/Kustomization/flux-system/${k}`;
    await waitForStatuses(fake.gitlab, sha, { [name('apps')]: ['running', 'success'], [name('infra')]: ['running', 'success'] });
    for (const s of fake.gitlab.statusesOf(sha)) {
      expect(s).toMatchObject({ projectId: project.id, ref: 'main', targetUrl: `${PUBLIC_URL}/ui/events/${eventId}` });
      expect(s.description!.length).toBeLessThanOrEqual(255);
    }
    expect(fake.gitlab.statusesOf(sha).find((s) => s.state === 'success')?.description).toBe(`ReconciliationSucceeded: Applied revision: main@sha1:${sha}`);
    expect(fake.gitlab.requests.filter((r) => r.path.includes(sha)).every((r) => r.auth === 'private-token')).toBe(true);
    expect(await metric(gw, /^kasgate_deployments_finished_total\{state="applied"\}/)).toBe(appliedBefore + 2);
    expect(await metric(gw, /^kasgate_push_to_applied_seconds_count/)).toBeGreaterThanOrEqual(2);
    await agent.close();
  });

  test("a failing Kustomization ends failed with Flux's message, also in the commit status; a later success at that revision is applied", async () => {
    const project = newProject(fake.gitlab);
    const { agent, reporter } = await reportingAgent(gw, 'fails', project);
    const old = newSha();
    const source = gitRepository('app', { project: project.path, sha: old });
    reporter.put(source, kustomization('apps', { source, applied: old })).full();
    await new Promise((r) => setTimeout(r, 200));

    const sha = newSha();
    const eventId = await push(gw, agent, project, sha);
    await waitForStates(gw, eventId, { apps: 'pending' });
    const fetched = gitRepository('app', { project: project.path, sha });
    const message = 'health check failed after 30s: timeout waiting for: [Deployment/apps/web status: \'InProgress\']';
    reporter.update(fetched, kustomization('apps', { source: fetched, applied: old, attempted: sha, ready: 'False', reason: 'HealthCheckFailed', message }));
    const failed = await waitForStates(gw, eventId, { apps: 'failed' });
    expect(failed.deployments[0]).toMatchObject({ state: 'failed', reason: 'HealthCheckFailed', message, revision: `main@sha1:${sha}` });
    expect(timelineOf(failed.deployments[0]!)).toEqual(['pending', 'fetched', 'failed']);
    const name = `kasgate/fails-${project.id}/Kustomization/flux-system/apps`;
    await waitForStatuses(fake.gitlab, sha, { [name]: ['running', 'failed'] });
    expect(fake.gitlab.statusesOf(sha).at(-1)!.description).toBe(`HealthCheckFailed: ${message}`);

    // Flux retries; when the same revision comes up healthy the deployment is applied after all.
    reporter.update(kustomization('apps', { source: fetched, applied: sha }));
    const recovered = await waitForStates(gw, eventId, { apps: 'applied' });
    expect(timelineOf(recovered.deployments[0]!)).toEqual(['pending', 'fetched', 'failed', 'applied']);
    await waitForStatuses(fake.gitlab, sha, { [name]: ['running', 'failed', 'success'] });
    await agent.close();
  });

  test('a commit status description longer than 255 characters is cut to 255', async () => {
    const project = newProject(fake.gitlab);
    const { agent, reporter } = await reportingAgent(gw, 'long', project);
    const source = gitRepository('app', { project: project.path, sha: newSha() });
    reporter.put(source, kustomization('apps', { source, applied: source.revision!.split(':')[1] })).full();
    const sha = newSha();
    const eventId = await push(gw, agent, project, sha);
    const fetched = gitRepository('app', { project: project.path, sha });
    reporter.update(fetched, kustomization('apps', { source: fetched, attempted: sha, ready: 'False', reason: 'BuildFailed', message: 'x'.repeat(2000) }));
    await waitForStates(gw, eventId, { apps: 'failed' });
    const failedStatus = await eventually(() => fake.gitlab.statusesOf(sha).find((s) => s.state === 'failed'), (s) => s !== undefined);
    expect(failedStatus!.description).toHaveLength(255);
    expect(failedStatus!.description!.startsWith('BuildFailed: xxx')).toBe(true);
    await agent.close();
  });

  test('a later push to the same ref that gets there first supersedes the earlier one: canceled on GitLab', async () => {
    const project = newProject(fake.gitlab);
    const { agent, reporter } = await reportingAgent(gw, 'supersede', project);
    const old = newSha();
    const source = gitRepository('app', { project: project.path, sha: old });
    reporter.put(source, kustomization('apps', { source, applied: old })).full();
    await new Promise((r) => setTimeout(r, 200));

    const first = newSha();
    const second = newSha();
    const firstEvent = await push(gw, agent, project, first);
    const secondEvent = await push(gw, agent, project, second);
    await waitForStates(gw, secondEvent, { apps: 'pending' });
    // Flux fetched only the newer commit.
    const fetched = gitRepository('app', { project: project.path, sha: second });
    reporter.update(fetched);
    const superseded = await waitForStates(gw, firstEvent, { apps: 'superseded' });
    expect(timelineOf(superseded.deployments[0]!)).toEqual(['pending', 'superseded']);
    expect(superseded.deployments[0]!.message).toBe(`event ${secondEvent} got there first`);
    expect(superseded.deployments[0]!.latencyMs).toBeGreaterThan(0);
    reporter.update(kustomization('apps', { source: fetched, applied: second }));
    await waitForStates(gw, secondEvent, { apps: 'applied' });
    const name = `kasgate/supersede-${project.id}/Kustomization/flux-system/apps`;
    await waitForStatuses(fake.gitlab, first, { [name]: ['running', 'canceled'] });
    await waitForStatuses(fake.gitlab, second, { [name]: ['running', 'success'] });
    expect((await eventOf(gw, firstEvent)).deployments[0]!.state).toBe('superseded');
    await agent.close();
  });

  test('an agent that reports its objects only after the push still gets the deployment, dated from the delivery', async () => {
    const project = newProject(fake.gitlab);
    const { agent, reporter } = await reportingAgent(gw, 'late', project);
    const sha = newSha();
    const eventId = await push(gw, agent, project, sha);
    await eventually(() => eventOf(gw, eventId), (e) => e.deliveries.length === 1);
    expect((await eventOf(gw, eventId)).deployments).toEqual([]);

    // Its first full set: the source has the commit already, the Kustomization applies it.
    const source = gitRepository('app', { project: project.path, sha });
    reporter.put(source, kustomization('apps', { source })).full();
    const fetched = await waitForStates(gw, eventId, { apps: 'fetched' });
    const deliveredAt = fetched.deliveries[0]!.at;
    expect(fetched.deployments[0]!.timeline[0]).toEqual({ state: 'pending', at: deliveredAt });
    reporter.update(kustomization('apps', { source, applied: sha }));
    await waitForStates(gw, eventId, { apps: 'applied' });
    await waitForStatuses(fake.gitlab, sha, { [`kasgate/late-${project.id}/Kustomization/flux-system/apps`]: ['running', 'success'] });
    await agent.close();
  });

  test("only sources that will fetch the push get deployments: other branches no, no ref means Flux's master", async () => {
    const project = newProject(fake.gitlab);
    const { agent, reporter } = await reportingAgent(gw, 'refs', project);
    const main = gitRepository('main', { project: project.path, ref: { branch: 'main' } });
    const master = gitRepository('default', { project: project.path, ref: null });
    const tagged = gitRepository('tagged', { project: project.path, ref: { semver: '>=1.0.0, <2.0.0' } });
    reporter
      .put(main, master, tagged, kustomization('on-main', { source: main }), kustomization('on-master', { source: master }), kustomization('on-tags', { source: tagged }))
      .full();
    await new Promise((r) => setTimeout(r, 200));

    const toMain = await push(gw, agent, project, newSha(), 'refs/heads/main');
    const toMaster = await push(gw, agent, project, newSha(), 'refs/heads/master');
    const toOther = await push(gw, agent, project, newSha(), 'refs/heads/feature');
    const inRange = await push(gw, agent, project, newSha(), 'refs/tags/v1.4.0');
    const outOfRange = await push(gw, agent, project, newSha(), 'refs/tags/v2.0.0');
    await eventually(() => eventOf(gw, outOfRange), (e) => e.deliveries.length === 1);
    const deployed = async (id: string) => (await eventOf(gw, id)).deployments.map((d) => d.object.name);
    const all = async () => ({
      toMain: await deployed(toMain),
      toMaster: await deployed(toMaster),
      toOther: await deployed(toOther),
      inRange: await deployed(inRange),
      outOfRange: await deployed(outOfRange),
    });
    const expected = { toMain: ['on-main'], toMaster: ['on-master'], toOther: [], inRange: ['on-tags'], outOfRange: [] };
    // A delivery is recorded before its deployments are made (deliveries.ts): wait for them, then
    // once more after the writer's next rounds, so that a wrong one made late is seen too.
    await eventually(all, (seen) => JSON.stringify(seen) === JSON.stringify(expected));
    await new Promise((r) => setTimeout(r, 300));
    expect(await all()).toEqual(expected);
    await agent.close();
  });

  test("a tag push is followed by its checkout_sha (the commit), not the tag object in after", async () => {
    const project = newProject(fake.gitlab);
    const { agent, reporter } = await reportingAgent(gw, 'tags', project);
    const source = gitRepository('release', { project: project.path, ref: { tag: 'v1.0.0' } });
    reporter.put(source, kustomization('apps', { source })).full();
    await new Promise((r) => setTimeout(r, 200));
    const tagObject = newSha();
    const commit = newSha();
    const eventId = await pushTag(gw, agent, project, 'v1.0.0', tagObject, commit);
    const fetched = { ...source, ready: 'True' as const, revision: `v1.0.0@sha1:${commit}` };
    reporter.update(fetched, { ...kustomization('apps', { source }), ready: 'True', revision: `v1.0.0@sha1:${commit}`, attemptedRevision: `v1.0.0@sha1:${commit}` });
    const done = await waitForStates(gw, eventId, { apps: 'applied' });
    expect(done.deployments[0]!.commitSha).toBe(commit);
    await waitForStatuses(fake.gitlab, commit, { [`kasgate/tags-${project.id}/Kustomization/flux-system/apps`]: ['running', 'success'] });
    expect(fake.gitlab.statusesOf(commit)[0]!.ref).toBe('v1.0.0');
    expect(fake.gitlab.statusesOf(tagObject)).toEqual([]);
    await agent.close();
  });

  test('GitLab refusing a status (unknown project: 404) is counted and never retried', async () => {
    const project = newProject(); // not known to the GitLab stand-in
    const { agent, reporter } = await reportingAgent(gw, 'unknown', project);
    const source = gitRepository('app', { project: project.path });
    reporter.put(source, kustomization('apps', { source })).full();
    await new Promise((r) => setTimeout(r, 200));
    const rejectedBefore = await metric(gw, /^kasgate_commit_statuses_total\{state="running",outcome="rejected"\}/);
    const sha = newSha();
    await push(gw, agent, project, sha);
    await eventually(() => metric(gw, /^kasgate_commit_statuses_total\{state="running",outcome="rejected"\}/), (n) => n === rejectedBefore + 1);
    await new Promise((r) => setTimeout(r, 1500));
    expect(fake.gitlab.requests.filter((r) => r.path.endsWith(`/statuses/${sha}`)).map((r) => r.status)).toEqual([404]);
    await agent.close();
  });

  test('GET /api/v1/events/{id}: 404 for an unknown event, 400 for a malformed id', async () => {
    const unknown = await gw.admin('GET', '/events/999999999');
    expect({ status: unknown.status, code: unknown.body.error.code }).toEqual({ status: 404, code: 'not_found' });
    for (const bad of ['abc', '-1', '99999999999999999999']) {
      const res = await gw.admin('GET', `/events/${bad}`);
      expect({ bad, status: res.status, code: res.body.error.code }).toEqual({ bad, status: 400, code: 'invalid_request' });
    }
  });

  test('an event no agent got has no deliveries and no deployments', async () => {
    const project = newProject(fake.gitlab);
    const res = await gw.postWebhook(pushBody({ projectId: project.id, path: project.path }));
    const { eventId } = (await res.json()) as { eventId: string };
    expect(await eventOf(gw, eventId)).toMatchObject({ id: eventId, projectPath: project.path, deliveries: [], deployments: [] });
  });
});

describe('KASGATE_DEPLOYMENT_TIMEOUT', () => {
  const fake = useFakeGitLab();
  const gw = useGateway({ env: fake.env({ KASGATE_DEPLOYMENT_TIMEOUT: '1s' }) });

  test('no outcome within the timeout: timed_out, and failed on GitLab saying so', async () => {
    const project = newProject(fake.gitlab);
    const { agent, reporter } = await reportingAgent(gw, 'slow', project);
    const source = gitRepository('app', { project: project.path, sha: newSha() });
    reporter.put(source, kustomization('apps', { source })).full();
    await new Promise((r) => setTimeout(r, 200));
    const sha = newSha();
    const eventId = await push(gw, agent, project, sha);
    const timedOut = await waitForStates(gw, eventId, { apps: 'timed_out' }, 6000);
    const d = timedOut.deployments[0]!;
    expect(timelineOf(d)).toEqual(['pending', 'timed_out']);
    expect(d.message).toBe('no outcome within 1s (waited for GitRepository flux-system/app to fetch it)');
    expect(d.latencyMs).toBeGreaterThanOrEqual(1000);
    const name = `kasgate/slow-${project.id}/Kustomization/flux-system/apps`;
    await waitForStatuses(fake.gitlab, sha, { [name]: ['running', 'failed'] });
    expect(fake.gitlab.statusesOf(sha).at(-1)!.description).toBe('Timed out: no outcome within 1s (waited for GitRepository flux-system/app to fetch it)');
    expect(await metric(gw, /^kasgate_deployments_finished_total\{state="timed_out"\}/)).toBeGreaterThanOrEqual(1);
    await agent.close();
  });
});

describe('embedded mode (PGlite, in-process presence)', () => {
  const fake = useFakeGitLab();
  const gw = useGateway({ embedded: true, env: fake.env() });

  test('the same timeline and commit statuses', async () => {
    const project = newProject(fake.gitlab);
    const { id: agentId, agent, reporter } = await reportingAgent(gw, 'embedded', project);
    const source = gitRepository('app', { project: project.path, sha: newSha() });
    reporter.put(source, kustomization('apps', { source })).full();
    await eventually(() => gw.admin('GET', `/agents/${agentId}/objects`), (r) => r.body.objects.length === 2);
    const sha = newSha();
    const eventId = await push(gw, agent, project, sha);
    const fetched = gitRepository('app', { project: project.path, sha });
    reporter.update(fetched, kustomization('apps', { source: fetched, applied: sha }));
    const done = await waitForStates(gw, eventId, { apps: 'applied' });
    expect(timelineOf(done.deployments[0]!)).toEqual(['pending', 'fetched', 'applied']);
    await waitForStatuses(fake.gitlab, sha, { [`kasgate/embedded-${project.id}/Kustomization/flux-system/apps`]: ['running', 'success'] });
    await agent.close();
    await eventually(() => gw.admin('GET', `/agents/${agentId}/objects`), (r) => r.body.objects.every((o: { stale: boolean }) => o.stale));
  });
});
