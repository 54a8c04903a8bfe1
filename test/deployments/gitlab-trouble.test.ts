/** Commit statuses when GitLab is not well: rate limited, hanging, refusing the token. The webhook path never notices. */
import { describe, expect, test } from 'vitest';
import { randomUUID } from 'node:crypto';
import { useGateway } from '../support/gateway.js';
import { useFakeGitLab } from '../support/use-fake-gitlab.js';
import { eventually } from '../support/agent-client.js';
import { pushBody } from '../support/fixtures.js';
import { gitRepository, kustomization, newSha } from '../support/flux-status.js';
import { metric, newProject, push, reportingAgent, waitForStates, waitForStatuses } from './support.js';

describe('GitLab rate limiting', () => {
  const fake = useFakeGitLab();
  const gw = useGateway({ env: fake.env() });

  test('a 429 with Retry-After: the status is tried again after that long, and posted once', async () => {
    const project = newProject(fake.gitlab);
    const { agent, reporter } = await reportingAgent(gw, 'limited', project);
    const source = gitRepository('app', { project: project.path });
    reporter.put(source, kustomization('apps', { source })).full();
    await new Promise((r) => setTimeout(r, 200));
    const sha = newSha();
    fake.gitlab.script({ status: 429, headers: { 'retry-after': '2' }, body: { message: 'Retry later' }, match: (_m, p) => p.endsWith(`/statuses/${sha}`) });
    const eventId = await push(gw, agent, project, sha);
    const fetched = gitRepository('app', { project: project.path, sha });
    reporter.update(fetched, kustomization('apps', { source: fetched, applied: sha }));
    await waitForStates(gw, eventId, { apps: 'applied' });
    const name = `kasgate/limited-${project.id}/Kustomization/flux-system/apps`;
    await waitForStatuses(fake.gitlab, sha, { [name]: ['running', 'success'] }, 10_000);
    const attempts = fake.gitlab.requests.filter((r) => r.path.endsWith(`/statuses/${sha}`));
    // The 429 on running; running again no sooner than Retry-After; success only after running (order per commit and name).
    expect(attempts.map((r) => r.status)).toEqual([429, 201, 201]);
    expect(attempts[1]!.at - attempts[0]!.at).toBeGreaterThanOrEqual(1900);
    expect(await metric(gw, /^kasgate_commit_statuses_total\{state="running",outcome="retried"\}/)).toBe(1);
    await agent.close();
  });
});

describe('a GitLab that hangs', () => {
  const fake = useFakeGitLab();
  const gw = useGateway({ env: fake.env({ KASGATE_GITLAB_TIMEOUT: '60s' }) });

  test('webhooks are answered as fast as before while every status post hangs; the statuses go out once GitLab answers', async () => {
    const project = newProject(fake.gitlab);
    const { agent, reporter } = await reportingAgent(gw, 'hung', project);
    const source = gitRepository('app', { project: project.path });
    reporter.put(source, ...Array.from({ length: 5 }, (_, i) => kustomization(`apps-${i}`, { source }))).full();
    await new Promise((r) => setTimeout(r, 200));

    const timed = async (count: number) => {
      const times: number[] = [];
      for (let i = 0; i < count; i++) {
        const started = performance.now();
        const res = await gw.postWebhook(pushBody({ projectId: project.id, path: project.path, after: newSha(), visibility: 0 }), { 'idempotency-key': randomUUID() });
        expect(res.status).toBe(202);
        await res.arrayBuffer();
        times.push(performance.now() - started);
      }
      return times.sort((a, b) => a - b);
    };
    const before = await timed(20);

    fake.gitlab.hang = true;
    const sha = newSha();
    await push(gw, agent, project, sha);
    // Statuses are owed and the workers sit on requests GitLab does not answer.
    await eventually(() => fake.gitlab.requests.filter((r) => r.status === 0 && r.path.includes('/statuses/')).length, (n) => n >= 4);
    const during = await timed(40);
    const held = fake.gitlab.requests.filter((r) => r.status === 0).length;
    const p50 = (t: number[]) => t[Math.floor(t.length / 2)]!;
    console.log(`webhook answer while GitLab hangs: p50 ${p50(during).toFixed(1)} ms, max ${during.at(-1)!.toFixed(1)} ms (before: p50 ${p50(before).toFixed(1)} ms, max ${before.at(-1)!.toFixed(1)} ms); ${held} GitLab requests held`);
    expect(held).toBeGreaterThanOrEqual(4);
    expect(p50(during)).toBeLessThan(p50(before) * 3 + 25);
    expect(during.at(-1)!).toBeLessThan(1000);

    fake.gitlab.release();
    const names = Object.fromEntries(Array.from({ length: 5 }, (_, i) => [`kasgate/hung-${project.id}/Kustomization/flux-system/apps-${i}`, ['running']]));
    await waitForStatuses(fake.gitlab, sha, names, 15_000);
    await agent.close();
  });
});

describe('a GitLab that sits on one project', () => {
  const fake = useFakeGitLab();
  const gw = useGateway({ env: fake.env({ KASGATE_GITLAB_TIMEOUT: '60s' }) });

  test("another project's statuses go out meanwhile: a hung request holds its own slot, not the queue", async () => {
    const slow = newProject(fake.gitlab, 'slow');
    const quick = newProject(fake.gitlab, 'quick');
    const slowAgent = await reportingAgent(gw, 'slow', slow);
    const quickAgent = await reportingAgent(gw, 'quick', quick);
    const slowSource = gitRepository('app', { project: slow.path });
    slowAgent.reporter.put(slowSource, kustomization('apps', { source: slowSource })).full();
    const quickSource = gitRepository('app', { project: quick.path });
    quickAgent.reporter.put(quickSource, kustomization('apps', { source: quickSource })).full();
    await new Promise((r) => setTimeout(r, 200));

    fake.gitlab.hangWhen = (method, path) => method === 'POST' && path.startsWith(`/api/v4/projects/${slow.id}/statuses/`);
    const slowSha = newSha();
    await push(gw, slowAgent.agent, slow, slowSha);
    await eventually(() => fake.gitlab.requests.filter((r) => r.status === 0 && r.path.includes(slowSha)).length, (n) => n >= 1);

    const quickSha = newSha();
    await push(gw, quickAgent.agent, quick, quickSha);
    await waitForStatuses(fake.gitlab, quickSha, { [`kasgate/quick-${quick.id}/Kustomization/flux-system/apps`]: ['running'] }, 5000);
    expect(fake.gitlab.statusesOf(slowSha)).toEqual([]);

    fake.gitlab.release();
    await waitForStatuses(fake.gitlab, slowSha, { [`kasgate/slow-${slow.id}/Kustomization/flux-system/apps`]: ['running'] }, 15_000);
    await slowAgent.agent.close();
    await quickAgent.agent.close();
  });
});

describe('a wrong GitLab token', () => {
  const fake = useFakeGitLab();
  const gw = useGateway({ env: () => ({ ...fake.env()(), KASGATE_GITLAB_TOKEN: 'glpat-not-the-token' }) });

  test('401 is counted and logged once per status, never retried', async () => {
    const project = newProject(fake.gitlab);
    const { agent, reporter } = await reportingAgent(gw, 'badtoken', project);
    const source = gitRepository('app', { project: project.path });
    reporter.put(source, kustomization('apps', { source })).full();
    await new Promise((r) => setTimeout(r, 200));
    const sha = newSha();
    await push(gw, agent, project, sha);
    await eventually(() => metric(gw, /^kasgate_commit_statuses_total\{state="running",outcome="rejected"\}/), (n) => n === 1);
    await new Promise((r) => setTimeout(r, 1500));
    expect(fake.gitlab.requests.filter((r) => r.path.endsWith(`/statuses/${sha}`)).map((r) => r.status)).toEqual([401]);
    expect(fake.gitlab.statusesOf(sha)).toEqual([]);
    await agent.close();
  });
});
