/**
 * Commit statuses owed when a replica dies: the queue is in Postgres, so the other replica (or
 * the same one, restarted) posts them, and each only once. Real `kasgate serve` processes,
 * SIGKILLed while GitLab answers 503 to every status.
 */
import { afterAll, beforeAll, expect, test } from 'vitest';
import { connectAgent, eventually } from '../support/agent-client.js';
import { createDeployment, startReplicaProcess, type Deployment, type ReplicaProcess } from '../support/replica-process.js';
import { startFakeGitLab, type FakeGitLab } from '../support/fake-gitlab.js';
import { nextProjectId, pushBody } from '../support/fixtures.js';
import { gitRepository, kustomization, newSha, StatusReporter } from '../support/flux-status.js';
import { statusLines } from './support.js';

let gitlab: FakeGitLab;
const deployments: Deployment[] = [];
const replicas: ReplicaProcess[] = [];

beforeAll(async () => {
  gitlab = await startFakeGitLab();
});
afterAll(async () => {
  await Promise.all(replicas.map((r) => r.stop().catch(() => {})));
  for (const d of deployments) await d.cleanup();
  await gitlab.close();
});

function newDeployment(): Deployment {
  const deployment = createDeployment({
    env: { KASGATE_GITLAB_URL: gitlab.url, KASGATE_GITLAB_TOKEN: gitlab.token, KASGATE_GITLAB_TIMEOUT: '1s', KASGATE_HEARTBEAT_SECONDS: '2' },
  });
  deployments.push(deployment);
  return deployment;
}

async function start(deployment: Deployment, name: string, port?: number): Promise<ReplicaProcess> {
  const replica = await startReplicaProcess(deployment.env, { name, ...(port === undefined ? {} : { port }) });
  replicas.push(replica);
  return replica;
}

/** On `replica`: an agent with two Kustomizations, a push, the agent reporting both applied. Returns the sha and the status names. */
async function owe(deployment: Deployment, replica: ReplicaProcess, label: string): Promise<{ sha: string; names: string[]; agentId: string; close(): void }> {
  const id = nextProjectId();
  const project = { id, path: `group/${label}-${id}` };
  gitlab.addProject({ ...project, defaultBranch: 'main' });
  const agentName = `${label}-${id}`;
  const registered = await deployment.createAgent(replica.url, agentName, project.path);
  const agent = await connectAgent(replica.wsUrl, registered.token);
  await agent.subscribe([project.path]);
  const reporter = new StatusReporter(agent);
  const source = gitRepository('app', { project: project.path });
  reporter.put(source, kustomization('apps', { source }), kustomization('infra', { source })).full();
  await new Promise((r) => setTimeout(r, 300));
  const sha = newSha();
  const res = await deployment.postWebhook(replica.url, pushBody({ projectId: id, path: project.path, after: sha, visibility: 0 }), { 'idempotency-key': `kill-${sha}` });
  expect(res.status).toBe(202);
  await agent.waitFor((f) => f.type === 'push');
  const fetched = gitRepository('app', { project: project.path, sha });
  reporter.update(fetched, kustomization('apps', { source: fetched, applied: sha }), kustomization('infra', { source: fetched, applied: sha }));
  // Owed: running and success for both, none posted (GitLab answers 503).
  await eventually(
    () => deployment.query<{ n: number }>(`SELECT count(*)::int AS n FROM commit_status_outbox WHERE sha = $1 AND posted_at IS NULL`, [sha]),
    (rows) => rows[0]!.n === 4,
    10_000,
  );
  await eventually(() => gitlab.requests.filter((r) => r.path.endsWith(`/statuses/${sha}`) && r.status === 503).length, (n) => n >= 1, 10_000);
  return { sha, names: ['apps', 'infra'].map((k) => `kasgate/${agentName}/Kustomization/flux-system/${k}`), agentId: registered.id, close: () => agent.ws.terminate() };
}

const exactlyOnce = (names: string[]) => Object.fromEntries(names.map((n) => [n, ['running', 'success']]));

test('a replica SIGKILLed with statuses owed: the other replica posts them, each once', { timeout: 90_000 }, async () => {
  const deployment = newDeployment();
  const [a, b] = await Promise.all([start(deployment, 'owe-a'), start(deployment, 'owe-b')]);
  gitlab.script({ status: 503, headers: { 'retry-after': '1' }, times: Infinity, match: (_m, p) => p.includes('/statuses/') });
  const { sha, names, agentId, close } = await owe(deployment, a, 'kill');
  const objects = () => deployment.admin(b.url, 'GET', `/agents/${agentId}/objects`);
  expect((await objects()).body.objects.map((o: { stale: boolean }) => o.stale)).toEqual([false, false, false]);
  a.kill('SIGKILL');
  expect((await a.exited).signal).toBe('SIGKILL');
  gitlab.clearScripts();
  // The dead replica never closed the agent's socket: its presence expires, and its objects read stale on the other replica.
  await eventually(objects, (r) => r.body.objects.length === 3 && r.body.objects.every((o: { stale: boolean }) => o.stale), 20_000);
  close();

  const lines = await eventually(() => statusLines(gitlab, sha), (l) => names.every((n) => l[n]?.length === 2), 30_000);
  expect(lines).toEqual(exactlyOnce(names));
  // Nothing more comes: each status was posted once.
  await new Promise((r) => setTimeout(r, 2000));
  expect(statusLines(gitlab, sha)).toEqual(exactlyOnce(names));
  const posted = await deployment.query<{ leased_by: string }>('SELECT leased_by FROM commit_status_outbox WHERE sha = $1 AND posted_at IS NOT NULL', [sha]);
  expect(posted.map((r) => r.leased_by)).toEqual(['owe-b', 'owe-b', 'owe-b', 'owe-b']);
  await b.stop();
});

test('the only replica SIGKILLed with statuses owed posts them once it is back', { timeout: 90_000 }, async () => {
  const deployment = newDeployment();
  const only = await start(deployment, 'alone');
  gitlab.script({ status: 503, headers: { 'retry-after': '1' }, times: Infinity, match: (_m, p) => p.includes('/statuses/') });
  const { sha, names, close } = await owe(deployment, only, 'restart');
  close();
  only.kill('SIGKILL');
  await only.exited;
  gitlab.clearScripts();
  const before = statusLines(gitlab, sha);
  expect(before).toEqual({});

  const again = await start(deployment, 'alone', only.port);
  const lines = await eventually(() => statusLines(gitlab, sha), (l) => names.every((n) => l[n]?.length === 2), 30_000);
  expect(lines).toEqual(exactlyOnce(names));
  await new Promise((r) => setTimeout(r, 2000));
  expect(statusLines(gitlab, sha)).toEqual(exactlyOnce(names));
  await again.stop();
});
