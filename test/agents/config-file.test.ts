/**
 * The agent's config file in its config project (.gitlab/agents/<name>/config.yaml), read through
 * the GitLab stand-in: at registration, after pushes to the default branch, periodically (once
 * across replicas); errors keep the last good config; flux_access opens private projects of the
 * config project's top-level group only; GitLab's trouble degrades /readyz and nothing else.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { describe, expect, test } from 'vitest';
import { startGateway, useGateway, useReplicaPair, type TestGateway } from '../support/gateway.js';
import { useFakeGitLab } from '../support/use-fake-gitlab.js';
import { connectAgent, eventually, type TestAgent } from '../support/agent-client.js';
import { nextProjectId, pushBody } from '../support/fixtures.js';
import type { FakeGitLab } from '../support/fake-gitlab.js';
import { CookieJar, fetchWithJar, signIn } from '../ui/support/session.js';

const PRIVATE = 0;
const sha = () => randomBytes(20).toString('hex');
const uniq = () => randomBytes(3).toString('hex');

/** A config project in a top-level group of its own, with the agent's file on `main`. */
function configProject(gitlab: FakeGitLab, agentName: string, yaml: string | undefined) {
  const top = `top-${uniq()}`;
  const project = gitlab.addProject({ id: nextProjectId(), path: `${top}/cluster-config`, defaultBranch: 'main' });
  const file = `.gitlab/agents/${agentName}/config.yaml`;
  const commit = yaml === undefined ? undefined : gitlab.files.put(project.id, file, yaml);
  return { top, project, file, commit, put: (text: string, branch?: string) => gitlab.files.put(project.id, file, text, branch) };
}

async function pushTo(gw: TestGateway, path: string, projectId: number, options: { ref?: string; visibility?: number } = {}) {
  const after = sha();
  const res = await gw.postWebhook(
    pushBody({ path, projectId, visibility: options.visibility ?? PRIVATE, ref: options.ref ?? 'refs/heads/main', defaultBranch: 'main', after }),
    { 'idempotency-key': randomUUID() },
  );
  expect(res.status).toBe(202);
  await res.arrayBuffer();
  return after;
}

const getAgent = async (gw: TestGateway, id: string) => (await gw.admin('GET', `/agents/${id}`)).body;
const fileReads = (gitlab: FakeGitLab, file: string) =>
  gitlab.requests.filter((r) => r.path.includes('/repository/files/') && decodeURIComponent(r.path).includes(file)).length;
const configFrames = (agent: TestAgent) => agent.frames.filter((f) => f.type === 'config');

describe('the config file, on one replica', () => {
  const fake = useFakeGitLab();
  const logLines: string[] = [];
  const gw = useGateway({ env: fake.env({ KASGATE_CONFIG_REFRESH: '1h', LOG_LEVEL: 'debug' }), logLines });

  test('read at registration: its keys override the stored config key by key; GitLab-only keys are accepted', async () => {
    const name = `reg-${uniq()}`;
    const cfg = configProject(
      fake.gitlab,
      name,
      'gitops:\n  manifest_projects: []\nci_access:\n  projects: []\nflux:\n  webhook_receiver_url: http://receiver.flux-system.svc/hook/abc\n',
    );
    const { status, body } = await gw.admin('POST', '/agents', { name, configProject: cfg.project.path, config: { flux: { interval: '1m' }, extra: true } });
    expect(status).toBe(201);
    expect(body.agent.config).toEqual({ flux: { interval: '1m', webhookReceiverUrl: 'http://receiver.flux-system.svc/hook/abc' }, extra: true });
    expect(body.agent.configError).toBeNull();
    expect(body.agent.configSource).toMatchObject({ project: cfg.project.path, path: cfg.file, ref: 'main', commitId: cfg.commit });
    const agent = await connectAgent(gw.wsUrl, body.token.token);
    expect(agent.frames[0]).toMatchObject({ type: 'hello', config: body.agent.config });
    await agent.close();
  });

  test('a GitLab that hangs delays registration by a few seconds at most; the read lands once GitLab answers', async () => {
    const name = `hang-${uniq()}`;
    const cfg = configProject(fake.gitlab, name, 'flux:\n  webhook_receiver_url: http://late.example/hook\n');
    fake.gitlab.hang = true;
    let created: { status: number; body: any };
    const started = Date.now();
    try {
      created = await gw.admin('POST', '/agents', { name, configProject: cfg.project.path });
    } finally {
      setTimeout(() => fake.gitlab.release(), 200);
    }
    expect(Date.now() - started).toBeLessThan(4500);
    expect(created.status).toBe(201);
    expect(created.body.agent.configSource).toBeNull();
    await eventually(() => getAgent(gw, created.body.agent.id), (a) => a.config.flux?.webhookReceiverUrl === 'http://late.example/hook');
  });

  test('a push to the default branch re-reads the file and the live agent gets a config frame; other branches do not', async () => {
    const name = `push-${uniq()}`;
    const cfg = configProject(fake.gitlab, name, 'flux:\n  webhook_receiver_url: http://one.example/hook\n');
    const created = await gw.createAgent(name, cfg.project.path);
    const agent = await connectAgent(gw.wsUrl, created.token);
    expect(agent.frames[0]).toMatchObject({ type: 'hello', config: { flux: { webhookReceiverUrl: 'http://one.example/hook' } } });

    const readsBefore = fileReads(fake.gitlab, cfg.file);
    cfg.put('flux:\n  webhook_receiver_url: http://feature.example/hook\n', 'feature');
    await pushTo(gw, cfg.project.path, cfg.project.id, { ref: 'refs/heads/feature' });
    await new Promise((r) => setTimeout(r, 500));
    expect(fileReads(fake.gitlab, cfg.file)).toBe(readsBefore);
    expect(configFrames(agent)).toEqual([]);

    const commit = cfg.put('flux:\n  webhook_receiver_url: http://two.example/hook\n');
    await pushTo(gw, cfg.project.path, cfg.project.id);
    const frame = await agent.waitFor((f) => f.type === 'config');
    expect(frame).toEqual({ type: 'config', config: { flux: { webhookReceiverUrl: 'http://two.example/hook' } } });
    expect((await getAgent(gw, created.id)).configSource.commitId).toBe(commit);
    await agent.close();
  });

  test('a missing file, bad YAML and an unknown key show as configError; the last good config stays in force', async () => {
    const name = `bad-${uniq()}`;
    const cfg = configProject(fake.gitlab, name, 'flux:\n  webhook_receiver_url: http://good.example/hook\n');
    const created = await gw.createAgent(name, cfg.project.path);
    const good = await getAgent(gw, created.id);
    expect(good.configError).toBeNull();
    const agent = await connectAgent(gw.wsUrl, created.token);

    const afterPush = async (change: () => void, expected: RegExp) => {
      change();
      await pushTo(gw, cfg.project.path, cfg.project.id);
      const seen = await eventually(() => getAgent(gw, created.id), (a) => expected.test(a.configError ?? ''));
      expect(seen.config).toEqual(good.config);
      expect(seen.configSource).toEqual(good.configSource);
    };
    await afterPush(() => fake.gitlab.files.remove(cfg.project.id, cfg.file), /not found/);
    await afterPush(() => cfg.put('flux: [unclosed\n'), /bad YAML/);
    await afterPush(() => cfg.put('flux:\n  webhook_receiver_url: http://x.example\nbogus_key: 1\n'), /unknown key: bogus_key/);
    await afterPush(() => cfg.put('flux:\n  webhook_receiver_url: 42\n'), /flux\.webhook_receiver_url/);
    const metrics = await (await fetch(`${gw.url}/metrics`)).text();
    expect(metrics).toMatch(/^kasgate_config_file_reads_total\{outcome="invalid"\} [3-9]/m);
    expect(metrics).toMatch(/^kasgate_config_file_reads_total\{outcome="missing"\} [1-9]/m);
    expect(configFrames(agent)).toEqual([]);

    // Fixed: the error goes, and the new config reaches the agent.
    cfg.put('flux:\n  webhook_receiver_url: http://fixed.example/hook\n');
    await pushTo(gw, cfg.project.path, cfg.project.id);
    await eventually(() => getAgent(gw, created.id), (a) => a.configError === null && a.config.flux?.webhookReceiverUrl === 'http://fixed.example/hook');
    await agent.waitFor((f) => f.type === 'config');

    await agent.close();
  });

  test("the status page's agent page shows the config error", async () => {
    const name = `page-${uniq()}`;
    const cfg = configProject(fake.gitlab, name, 'nonsense_key: true\n');
    const created = await gw.createAgent(name, cfg.project.path);
    const jar = new CookieJar();
    await signIn(gw.url, jar, gw.adminToken);
    const page = await fetchWithJar(jar, `${gw.url}/ui/agents/${created.id}`);
    expect(page.status).toBe(200);
    const text = await page.text();
    expect(text).toContain('Config error');
    expect(text).toContain('unknown key: nonsense_key');
  });

  test("flux_access opens a private project of the config project's top-level group without reconnecting; another top-level group is refused and named", async () => {
    const name = `flux-${uniq()}`;
    const cfg = configProject(fake.gitlab, name, '');
    const app = `${cfg.top}/apps/private-app`;
    const underGroup = `${cfg.top}/platform/infra`;
    const foreign = `other-${uniq()}/secret-app`;
    const created = await gw.createAgent(name, cfg.project.path);
    const agent = await connectAgent(gw.wsUrl, created.token);
    const before = await agent.subscribe([app, underGroup, foreign]);
    expect(before.projects.map((p) => p.access)).toEqual(['unverified', 'unverified', 'unverified']);

    const told: string[] = [];
    gw.ctx.fluxAccess.onFluxAccessChanged((id) => told.push(id));
    cfg.put(`flux_access:
  rotate: 12h
  projects:
    - id: ${app}
      role: read_repository
      secret_name: app-git
      namespaces: [apps]
    - id: ${foreign}
      secret_name: stolen
      namespaces: [apps]
  groups:
    - id: ${cfg.top}/platform
      role: read_registry
      secret_name: platform-registry
      namespaces: [apps, infra]
`);
    await pushTo(gw, cfg.project.path, cfg.project.id);
    const seen = await eventually(() => getAgent(gw, created.id), (a) => a.configError !== null);
    expect(seen.configError).toContain(foreign);
    expect(seen.configError).toContain(`"${cfg.top}"`);
    expect(told).toContain(created.id);
    expect(await gw.ctx.fluxAccess.fluxAccessOf(created.id)).toEqual({
      rotateSeconds: 12 * 3600,
      entries: [
        { kind: 'project', path: app, role: 'read_repository', secretName: 'app-git', namespaces: ['apps'] },
        { kind: 'group', path: `${cfg.top}/platform`, role: 'read_registry', secretName: 'platform-registry', namespaces: ['apps', 'infra'] },
      ],
    });
    expect(await gw.ctx.fluxAccess.agentsWithFluxAccess()).toContain(created.id);

    // The same socket: the subscribe answer and the pushes follow the file.
    await eventually(
      async () => (await agent.subscribe([app, underGroup, foreign])).projects.map((p) => p.access),
      (a) => a.join() === 'granted,granted,unverified',
    );
    const toApp = await pushTo(gw, app, nextProjectId());
    const toGroup = await pushTo(gw, underGroup, nextProjectId());
    const toForeign = await pushTo(gw, foreign, nextProjectId());
    await agent.waitFor((f) => f.type === 'push' && f.after === toApp);
    await agent.waitFor((f) => f.type === 'push' && f.after === toGroup);
    await new Promise((r) => setTimeout(r, 300));
    expect(agent.pushes().map((p) => p.after)).not.toContain(toForeign);

    // Admin grants keep working beside the file's.
    const granted = `granted-${uniq()}/app`;
    expect((await gw.admin('PUT', `/agents/${created.id}/grants`, { projects: [granted] })).status).toBe(200);
    await eventually(async () => (await agent.subscribe([app, granted])).projects.map((p) => p.access).join(), (a) => a === 'granted,granted');

    // Removing the entries closes the project again, still on the same socket.
    cfg.put('flux: {}\n');
    await pushTo(gw, cfg.project.path, cfg.project.id);
    await eventually(() => gw.ctx.fluxAccess.fluxAccessOf(created.id), (a) => a === undefined);
    await eventually(async () => (await agent.subscribe([app])).projects[0]!.access, (a) => a === 'unverified');
    const closed = await pushTo(gw, app, nextProjectId());
    await new Promise((r) => setTimeout(r, 300));
    expect(agent.pushes().map((p) => p.after)).not.toContain(closed);
    await agent.close();
  });

  test("moving the config project to another top-level group takes the old file's entries with it", async () => {
    const name = `move-${uniq()}`;
    const cfg = configProject(fake.gitlab, name, undefined);
    const app = `${cfg.top}/apps/app`;
    cfg.put(`flux_access:\n  projects:\n    - id: ${app}\n      secret_name: app-git\n      namespaces: [apps]\n`);
    const created = await gw.createAgent(name, cfg.project.path);
    expect((await gw.ctx.fluxAccess.fluxAccessOf(created.id))?.entries.map((e) => e.path)).toEqual([app]);
    const agent = await connectAgent(gw.wsUrl, created.token);
    expect((await agent.subscribe([app])).projects[0]!.access).toBe('granted');
    // The new project has no file for this agent: the old entries stay stored, but count nowhere.
    const elsewhere = fake.gitlab.addProject({ id: nextProjectId(), path: `elsewhere-${uniq()}/cfg`, defaultBranch: 'main' });
    expect((await gw.admin('PATCH', `/agents/${created.id}`, { configProject: elsewhere.path })).status).toBe(200);
    expect(await gw.ctx.fluxAccess.fluxAccessOf(created.id)).toBeUndefined();
    await eventually(async () => (await agent.subscribe([app])).projects[0]!.access, (a) => a === 'unverified');
    await eventually(() => getAgent(gw, created.id), (a) => /not found/.test(a.configError ?? ''));
    await agent.close();
  });

  test('a public project GitLab shows is granted before its first push; private ones stay unverified; the answer is cached', async () => {
    const name = `vis-${uniq()}`;
    const cfg = configProject(fake.gitlab, name, '');
    const pub = fake.gitlab.addProject({ id: nextProjectId(), path: `pub-${uniq()}/app`, defaultBranch: 'main' });
    fake.gitlab.files.visibility.set(pub.id, 'public');
    const priv = fake.gitlab.addProject({ id: nextProjectId(), path: `priv-${uniq()}/app`, defaultBranch: 'main' });
    const created = await gw.createAgent(name, cfg.project.path);
    const agent = await connectAgent(gw.wsUrl, created.token);
    const missing = `gone-${uniq()}/app`;
    const answer = await agent.subscribe([pub.path, priv.path, missing]);
    expect(answer.projects.map((p) => p.access)).toEqual(['granted', 'unverified', 'unverified']);
    const lookups = () => fake.gitlab.requests.filter((r) => r.method === 'GET' && /^\/api\/v4\/projects\/[^/]+$/.test(r.path)).length;
    const before = lookups();
    const again = await agent.subscribe([pub.path, priv.path, missing]);
    expect(again.projects.map((p) => p.access)).toEqual(['granted', 'unverified', 'unverified']);
    expect(lookups()).toBe(before);
    await agent.close();
  });

  test('a slow GitLab never holds a subscribe beyond a short wait, and fails closed', async () => {
    const name = `slow-${uniq()}`;
    const cfg = configProject(fake.gitlab, name, '');
    const created = await gw.createAgent(name, cfg.project.path);
    const agent = await connectAgent(gw.wsUrl, created.token);
    const pub = fake.gitlab.addProject({ id: nextProjectId(), path: `slowpub-${uniq()}/app`, defaultBranch: 'main' });
    fake.gitlab.files.visibility.set(pub.id, 'public');
    fake.gitlab.hang = true;
    try {
      const started = Date.now();
      const answer = await agent.subscribe([pub.path]);
      expect(Date.now() - started).toBeLessThan(2000);
      expect(answer.projects[0]!.access).toBe('unverified');
    } finally {
      fake.gitlab.release();
    }
    await agent.close();
  });

  test('GitLab answering 500 and 429: webhooks and deliveries go on, /readyz says degraded (still ready), and all recovers', async () => {
    const name = `down-${uniq()}`;
    const cfg = configProject(fake.gitlab, name, 'flux:\n  webhook_receiver_url: http://before.example/hook\n');
    const created = await gw.createAgent(name, cfg.project.path);
    const agent = await connectAgent(gw.wsUrl, created.token);
    await agent.subscribe([cfg.project.path]);

    fake.gitlab.script({ status: 500, times: Infinity, match: (_m, p) => p.startsWith('/projects/') });
    cfg.put('flux:\n  webhook_receiver_url: http://after.example/hook\n');
    const started = performance.now();
    const delivered = await pushTo(gw, cfg.project.path, cfg.project.id);
    expect(performance.now() - started).toBeLessThan(1000);
    await agent.waitFor((f) => f.type === 'push' && f.after === delivered);
    const down = await eventually(() => getAgent(gw, created.id), (a) => /GitLab unavailable/.test(a.configError ?? ''), 15_000);
    expect(down.config.flux.webhookReceiverUrl).toBe('http://before.example/hook');
    const ready = await fetch(`${gw.url}/readyz`);
    const readiness = (await ready.json()) as { status: string; checks: Record<string, string> };
    expect(ready.status).toBe(200);
    expect(readiness.status).toBe('ready');
    expect(readiness.checks.gitlab).toMatch(/^degraded/);

    // Back, but rate limited once: the read waits out Retry-After and lands.
    fake.gitlab.clearScripts();
    fake.gitlab.script({ status: 429, headers: { 'retry-after': '1' }, body: { message: 'Retry later' }, match: (_m, p) => p.startsWith('/projects/') });
    await pushTo(gw, cfg.project.path, cfg.project.id);
    await agent.waitFor((f) => f.type === 'config' && (f.config as any).flux?.webhookReceiverUrl === 'http://after.example/hook', 15_000);
    expect((await getAgent(gw, created.id)).configError).toBeNull();
    const after = (await (await fetch(`${gw.url}/readyz`)).json()) as { checks: Record<string, string> };
    expect(after.checks.gitlab).toBe('ok');
    await agent.close();
  });

  test('a refused token shows on the agent and on /readyz as degraded, and clears when GitLab answers again', async () => {
    const name = `refused-${uniq()}`;
    const cfg = configProject(fake.gitlab, name, '');
    const created = await gw.createAgent(name, cfg.project.path);
    fake.gitlab.script({ status: 401, times: Infinity, body: { message: '401 Unauthorized' }, match: (_m, p) => p.startsWith('/projects/') });
    try {
      await pushTo(gw, cfg.project.path, cfg.project.id);
      await eventually(() => getAgent(gw, created.id), (a) => /refused.*401.*KASGATE_GITLAB_TOKEN/.test(a.configError ?? ''));
      const ready = await fetch(`${gw.url}/readyz`);
      expect(ready.status).toBe(200);
      expect(((await ready.json()) as { checks: Record<string, string> }).checks.gitlab).toMatch(/^degraded.*refuses the token/);
    } finally {
      fake.gitlab.clearScripts();
    }
    await pushTo(gw, cfg.project.path, cfg.project.id);
    await eventually(() => getAgent(gw, created.id), (a) => a.configError === null);
    expect(((await (await fetch(`${gw.url}/readyz`)).json()) as { checks: Record<string, string> }).checks.gitlab).toBe('ok');
  });

  test('the GitLab token is in no log line', async () => {
    expect(logLines.length).toBeGreaterThan(20);
    expect(logLines.some((line) => line.includes('config file'))).toBe(true);
    for (const line of logLines) expect(line).not.toContain(fake.gitlab.token);
  });
});

describe('config frames without the config file', () => {
  const gw = useGateway({ env: { KASGATE_HEARTBEAT_SECONDS: '1' } });

  test('PATCH config: every live connection gets one config frame; the same config again sends none', async () => {
    const created = await gw.createAgent(`patch-${uniq()}`, `p-${uniq()}/cfg`, { flux: { webhookReceiverUrl: 'http://a.example' } });
    const agents = [await connectAgent(gw.wsUrl, created.token), await connectAgent(gw.wsUrl, created.token)];
    const config = { flux: { webhookReceiverUrl: 'http://b.example' } };
    expect((await gw.admin('PATCH', `/agents/${created.id}`, { config })).status).toBe(200);
    for (const agent of agents) expect(await agent.waitFor((f) => f.type === 'config')).toEqual({ type: 'config', config });
    expect((await gw.admin('PATCH', `/agents/${created.id}`, { config })).status).toBe(200);
    await new Promise((r) => setTimeout(r, 300));
    for (const agent of agents) expect(configFrames(agent)).toHaveLength(1);
    for (const agent of agents) await agent.close();
  });

  test('a config change whose bus message was lost still reaches the agent, with the periodic access check', async () => {
    const created = await gw.createAgent(`lost-${uniq()}`, `l-${uniq()}/cfg`);
    const agent = await connectAgent(gw.wsUrl, created.token);
    // Written behind the gateway's back, as if the replica that read the file had lost its bus.
    await gw.ctx.pool.query(`UPDATE agents SET config_file = '{"flux":{"webhookReceiverUrl":"http://quiet.example"}}' WHERE id = $1`, [created.id]);
    const frame = await agent.waitFor((f) => f.type === 'config', 5000);
    expect(frame).toEqual({ type: 'config', config: { flux: { webhookReceiverUrl: 'http://quiet.example' } } });
    await agent.close();
  });
});

describe('the periodic read, across two replicas', () => {
  const fake = useFakeGitLab();
  const [a, b] = useReplicaPair({ env: fake.env({ KASGATE_CONFIG_REFRESH: '1s' }) });

  test('a change with no push reaches the agent on the other replica; each period reads the file once, not once per replica', async () => {
    const name = `periodic-${uniq()}`;
    const cfg = configProject(fake.gitlab, name, 'flux:\n  webhook_receiver_url: http://first.example/hook\n');
    const created = await a.createAgent(name, cfg.project.path);
    const agent = await connectAgent(b.wsUrl, created.token);
    cfg.put('flux:\n  webhook_receiver_url: http://second.example/hook\n');
    await agent.waitFor((f) => f.type === 'config' && (f.config as any).flux?.webhookReceiverUrl === 'http://second.example/hook', 5000);

    const start = fileReads(fake.gitlab, cfg.file);
    await new Promise((r) => setTimeout(r, 4000));
    const reads = fileReads(fake.gitlab, cfg.file) - start;
    // A 1 s period with up to 10% jitter: 3 or 4 reads in 4 s; one per replica would be twice that.
    expect(reads).toBeGreaterThanOrEqual(3);
    expect(reads).toBeLessThanOrEqual(5);
    await agent.close();
  });
});

describe('GitLab taken out of the configuration', () => {
  const fake = useFakeGitLab();
  const gw = useGateway({ env: fake.env({ KASGATE_CONFIG_REFRESH: '1h' }) });

  test("a replica started without KASGATE_GITLAB_URL/TOKEN stops counting the files' keys and flux_access grants", async () => {
    const name = `off-${uniq()}`;
    const cfg = configProject(fake.gitlab, name, undefined);
    const app = `${cfg.top}/apps/app`;
    cfg.put(`flux:\n  webhook_receiver_url: http://receiver/hook/x\nflux_access:\n  projects:\n    - id: ${app}\n      secret_name: app-git\n      namespaces: [apps]\n`);
    const created = await gw.createAgent(name, cfg.project.path);
    expect((await getAgent(gw, created.id)).config).toEqual({ flux: { webhookReceiverUrl: 'http://receiver/hook/x' } });

    // The same deployment (schema, Redis prefix), started without the GitLab API.
    const withoutGitLab = await startGateway({ peer: gw });
    try {
      const seen = await getAgent(withoutGitLab, created.id);
      expect(seen).toMatchObject({ config: {}, configSource: null, configError: null });
      expect(await withoutGitLab.ctx.fluxAccess.fluxAccessOf(created.id)).toBeUndefined();
      const agent = await connectAgent(withoutGitLab.wsUrl, created.token);
      expect((await agent.subscribe([app])).projects[0]!.access).toBe('unverified');
      await agent.close();
    } finally {
      await withoutGitLab.close();
    }
  });
});
