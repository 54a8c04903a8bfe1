/**
 * Deploy tokens for Flux end to end on the gateway: flux_access (as the config-file reader stores
 * it) → a deploy token on the GitLab stand-in → a credentials frame on the agent's socket →
 * credentials_applied → the sealed copy gone; rotation, failures, revocation, and no token in
 * any log line or database dump.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { useGateway } from '../support/gateway.js';
import { useFakeGitLab } from '../support/use-fake-gitlab.js';
import { connectAgent, eventually } from '../support/agent-client.js';
import { databaseUrl, queryInSchema } from '../support/isolation.js';
import type { CredentialsFrame } from '../../src/protocol/kasgate-v1.js';
import { metric } from '../deployments/support.js';
import { CookieJar, fetchWithJar, signIn } from '../ui/support/session.js';
import { credentialsOf, encryptionKey, isCredentials, projectEntry, setFluxAccess } from './support.js';

const DAY = 86_400;
const logLines: string[] = [];
const logged = () => logLines.join('');

describe('deploy tokens for Flux', () => {
  const fake = useFakeGitLab();
  const gw = useGateway({
    env: fake.env({ KASGATE_ENCRYPTION_KEY: encryptionKey(), KASGATE_REGISTRY_HOST: 'registry.example.com', LOG_LEVEL: 'trace' }),
    logLines,
  });
  let nextProject = 100;
  const project = (path: string) => fake.gitlab.addProject({ id: nextProject++, path, defaultBranch: 'main' });

  it('makes a project deploy token with the role as scope, kasgate-<agent>-<secret_name> and an expiry of rotate; the agent gets it, applies it, and the sealed copy goes', async () => {
    const app = project('acme/app');
    project('acme/config');
    const agent = await gw.createAgent('edge', 'acme/config');
    const socket = await connectAgent(gw.wsUrl, agent.token);
    const before = Date.now();
    await setFluxAccess(gw, agent.id, { rotateSeconds: 90 * DAY, entries: [projectEntry('acme/app', 'app-git', { namespaces: ['apps', 'web'] })] });

    const frame = await socket.waitFor(isCredentials, 10_000);
    const made = fake.gitlab.deployTokens.tokens.filter((t) => t.owner.kind === 'project' && t.owner.id === app.id);
    expect(made).toHaveLength(1);
    const token = made[0]!;
    expect(token.name).toBe('kasgate-edge-app-git');
    expect(token.scopes).toEqual(['read_repository']);
    const expires = Date.parse(token.expiresAt!);
    expect(expires).toBeGreaterThanOrEqual(before + 90 * DAY * 1000 - 1000);
    expect(expires).toBeLessThanOrEqual(Date.now() + 90 * DAY * 1000 + 1000);
    expect(fake.gitlab.requests.some((r) => r.method === 'POST' && r.path === '/api/v4/projects/acme%2Fapp/deploy_tokens')).toBe(true);

    expect(frame).toMatchObject({ secretName: 'app-git', namespaces: ['apps', 'web'], kind: 'basic-auth', username: token.username, registry: null });
    expect(frame.password).toBe(token.token);
    expect(Date.parse(frame.expiresAt)).toBe(expires);

    const shown = await credentialsOf(gw, agent.id);
    expect(shown.credentials).toHaveLength(1);
    expect(shown.credentials[0]).toMatchObject({ id: frame.id, state: 'sent', project: 'acme/app', group: null, role: 'read_repository', deployTokenId: token.id, appliedAt: null, revokedAt: null });
    expect(JSON.stringify(shown)).not.toContain(token.token);
    const [waiting] = await queryInSchema<{ sealed: Buffer }>(gw.schema, 'SELECT sealed_token AS sealed FROM flux_credentials WHERE id = $1', [frame.id]);
    expect(waiting!.sealed.length).toBeGreaterThan(28);
    expect(waiting!.sealed.includes(Buffer.from(token.token))).toBe(false);

    // The status page's agent page shows it waiting for the agent, never the token.
    const jar = new CookieJar();
    await signIn(gw.url, jar, gw.adminToken);
    const page = await (await fetchWithJar(jar, `${gw.url}/ui/agents/${agent.id}`)).text();
    expect(page).toContain('Deploy tokens for Flux');
    const row = /<tr>\s*<th scope="row"><code>app-git<\/code><\/th>[\s\S]*?<\/tr>/.exec(page)?.[0] ?? '';
    expect(row).toContain('<td>apps, web</td>');
    expect(row).toContain('<code>acme/app</code> (read_repository)');
    expect(row).toMatch(/state-warn"><span aria-hidden="true">▲<\/span> sent</);
    expect(page).not.toContain(token.token);

    socket.send({ type: 'credentials_applied', id: frame.id });
    const applied = await eventually(() => credentialsOf(gw, agent.id), (b) => b.credentials[0]?.state === 'applied');
    expect(applied.credentials[0]!.appliedAt).not.toBeNull();
    const [after] = await queryInSchema<{ sealed: Buffer | null }>(gw.schema, 'SELECT sealed_token AS sealed FROM flux_credentials WHERE id = $1', [frame.id]);
    expect(after!.sealed).toBeNull();
    expect(fake.gitlab.deployTokens.works(token.token)).toBe(true);
    await socket.close();
  });

  it('makes a group token for a read_registry entry and sends it as dockerconfigjson for KASGATE_REGISTRY_HOST', async () => {
    project('acme/images/api');
    const agent = await gw.createAgent('registry-agent', 'acme/config');
    const socket = await connectAgent(gw.wsUrl, agent.token);
    await setFluxAccess(gw, agent.id, {
      rotateSeconds: 7 * DAY,
      entries: [{ kind: 'group', path: 'acme/images', role: 'read_registry', secretName: 'images-pull', namespaces: ['apps'] }],
    });
    const frame = await socket.waitFor(isCredentials, 10_000);
    expect(frame).toMatchObject({ kind: 'dockerconfigjson', registry: 'registry.example.com', secretName: 'images-pull' });
    const token = fake.gitlab.deployTokens.tokens.find((t) => t.token === frame.password)!;
    expect(token.owner).toEqual({ kind: 'group', path: 'acme/images' });
    expect(token.scopes).toEqual(['read_registry']);
    expect(fake.gitlab.requests.some((r) => r.method === 'POST' && r.path === '/api/v4/groups/acme%2Fimages/deploy_tokens')).toBe(true);
    expect((await credentialsOf(gw, agent.id)).credentials[0]).toMatchObject({ group: 'acme/images', project: null, kind: 'dockerconfigjson' });
    await socket.close();
  });

  it('sends a token made while the agent was away as soon as it connects', async () => {
    project('acme/offline');
    const agent = await gw.createAgent('offline', 'acme/config');
    await setFluxAccess(gw, agent.id, { rotateSeconds: 30 * DAY, entries: [projectEntry('acme/offline', 'offline-git')] });
    await eventually(() => credentialsOf(gw, agent.id), (b) => b.credentials.length === 1, 10_000);
    const socket = await connectAgent(gw.wsUrl, agent.token);
    const frame = await socket.waitFor(isCredentials, 3000);
    expect(fake.gitlab.deployTokens.works(frame.password)).toBe(true);
    await socket.close();
  });

  it('a stored token that no longer opens (another key, tampered) is never sent: it is revoked and a new one made', async () => {
    project('acme/tampered');
    const agent = await gw.createAgent('tampered', 'acme/config');
    await setFluxAccess(gw, agent.id, { rotateSeconds: 30 * DAY, entries: [projectEntry('acme/tampered', 't-git')] });
    const [made] = (await eventually(() => credentialsOf(gw, agent.id), (b) => b.credentials.length === 1, 10_000)).credentials;
    await queryInSchema(gw.schema, `UPDATE flux_credentials SET sealed_token = set_byte(sealed_token, 19, get_byte(sealed_token, 19) # 255) WHERE id = $1`, [made!.id]);
    const socket = await connectAgent(gw.wsUrl, agent.token);
    const frame = await socket.waitFor(isCredentials, 10_000);
    expect(frame.id).not.toBe(made!.id);
    expect(fake.gitlab.deployTokens.works(frame.password)).toBe(true);
    const shown = await eventually(() => credentialsOf(gw, agent.id), (b) => b.credentials.find((c) => c.id === made!.id)?.state === 'revoked');
    expect(shown.credentials.find((c) => c.id === made!.id)!.revokeReason).toBe('unreadable');
    expect(socket.frames.filter(isCredentials).map((f) => f.id)).toEqual([frame.id]);
    await socket.close();
  });

  it('rotates at two thirds of a short lifetime and revokes the old token only after the agent applied the new one', async () => {
    project('acme/rotating');
    const agent = await gw.createAgent('rotating', 'acme/config');
    const socket = await connectAgent(gw.wsUrl, agent.token);
    const counted = async () =>
      Object.fromEntries(
        await Promise.all(['created', 'applied', 'revoked'].map(async (e) => [e, await metric(gw, new RegExp(`^kasgate_deploy_tokens_total\\{event="${e}"\\}`))] as const)),
      );
    const countedBefore = await counted();
    await setFluxAccess(gw, agent.id, { rotateSeconds: 6, entries: [projectEntry('acme/rotating', 'rot-git')] });
    const first = await socket.waitFor(isCredentials, 10_000);
    const firstMadeAt = Date.now();
    socket.send({ type: 'credentials_applied', id: first.id });

    // Two thirds of 6 s: a new token after about 4 s.
    const second = await socket.waitFor((f): f is CredentialsFrame => isCredentials(f) && f.id !== first.id, 10_000);
    expect(Date.now() - firstMadeAt).toBeGreaterThanOrEqual(3000);
    expect(second.password).not.toBe(first.password);
    expect(fake.gitlab.deployTokens.works(second.password)).toBe(true);
    // Not applied yet: the old token keeps working.
    await new Promise((r) => setTimeout(r, 1200));
    expect(fake.gitlab.deployTokens.works(first.password)).toBe(true);
    let shown = await credentialsOf(gw, agent.id);
    expect(shown.credentials.find((c) => c.id === first.id)).toMatchObject({ state: 'applied', revokedAt: null, revokeReason: 'superseded' });

    socket.send({ type: 'credentials_applied', id: second.id });
    shown = await eventually(() => credentialsOf(gw, agent.id), (b) => b.credentials.find((c) => c.id === first.id)?.state === 'revoked');
    expect(fake.gitlab.deployTokens.works(first.password)).toBe(false);
    expect(fake.gitlab.deployTokens.works(second.password)).toBe(true);
    expect(shown.credentials.find((c) => c.id === first.id)!.revokedAt).not.toBeNull();
    expect(shown.credentials.find((c) => c.id === second.id)).toMatchObject({ state: 'applied', revokedAt: null });
    // What an operator's dashboard sees of it (the earlier tests' agents may still be revoking in the background).
    const countedAfter = await counted();
    expect(countedAfter.created! - countedBefore.created!).toBe(2);
    expect(countedAfter.applied! - countedBefore.applied!).toBe(2);
    expect(countedAfter.revoked! - countedBefore.revoked!).toBeGreaterThanOrEqual(1);
    await setFluxAccess(gw, agent.id, null);
    await socket.close();
  });

  it('shows credentials_failed with its message and sends the token again later', async () => {
    project('acme/forbidden');
    const agent = await gw.createAgent('failing', 'acme/config');
    const socket = await connectAgent(gw.wsUrl, agent.token);
    await setFluxAccess(gw, agent.id, { rotateSeconds: 30 * DAY, entries: [projectEntry('acme/forbidden', 'f-git', { namespaces: ['locked'] })] });
    const frame = await socket.waitFor(isCredentials, 10_000);
    const message = 'secrets "f-git" is forbidden: User "system:serviceaccount:kasgate-agent:kasgate-agent" cannot patch resource "secrets" in namespace "locked"';
    socket.send({ type: 'credentials_failed', id: frame.id, message });
    const shown = await eventually(() => credentialsOf(gw, agent.id), (b) => b.credentials[0]?.state === 'failed');
    expect(shown.credentials[0]!.lastError).toBe(message);

    let seen = 0;
    const again = await socket.waitFor((f): f is CredentialsFrame => isCredentials(f) && f.id === frame.id && ++seen > 1, 12_000);
    expect(again.password).toBe(frame.password);
    socket.send({ type: 'credentials_applied', id: frame.id });
    const applied = await eventually(() => credentialsOf(gw, agent.id), (b) => b.credentials[0]?.state === 'applied');
    expect(applied.credentials[0]!.lastError).toBeNull();
    await socket.close();
  });

  it('retries with backoff while GitLab answers 500, shows the error meanwhile, and recovers', async () => {
    project('acme/flaky');
    const agent = await gw.createAgent('flaky', 'acme/config');
    const socket = await connectAgent(gw.wsUrl, agent.token);
    fake.gitlab.script({ match: (m, p) => m === 'POST' && p === '/projects/acme%2Fflaky/deploy_tokens', status: 500, body: { message: '500 Internal Server Error' }, times: 3 });
    await setFluxAccess(gw, agent.id, { rotateSeconds: 30 * DAY, entries: [projectEntry('acme/flaky', 'flaky-git')] });
    const failing = await eventually(() => credentialsOf(gw, agent.id), (b) => b.error !== null, 10_000);
    expect(failing.error).toMatch(/500/);
    expect(failing.credentials).toHaveLength(0);
    const frame = await socket.waitFor(isCredentials, 20_000);
    expect(fake.gitlab.deployTokens.works(frame.password)).toBe(true);
    const posts = fake.gitlab.requests.filter((r) => r.method === 'POST' && r.path === '/api/v4/projects/acme%2Fflaky/deploy_tokens');
    expect(posts.map((r) => r.status)).toEqual([500, 500, 500, 201]);
    // Backoff: the tries spread out rather than hammering GitLab.
    expect(posts.at(-1)!.at - posts[0]!.at).toBeGreaterThan(1000);
    socket.send({ type: 'credentials_applied', id: frame.id });
    await eventually(() => credentialsOf(gw, agent.id), (b) => b.error === null && b.credentials[0]?.state === 'applied');
    await socket.close();
  });

  it('revokes the tokens of an entry removed from flux_access, and of a deleted agent', async () => {
    project('acme/one');
    project('acme/two');
    const agent = await gw.createAgent('shrinking', 'acme/config');
    await setFluxAccess(gw, agent.id, { rotateSeconds: 30 * DAY, entries: [projectEntry('acme/one', 'one-git'), projectEntry('acme/two', 'two-git')] });
    const both = await eventually(() => credentialsOf(gw, agent.id), (b) => b.credentials.length === 2, 10_000);
    const tokenOf = (secret: string) => fake.gitlab.deployTokens.tokens.find((t) => t.id === both.credentials.find((c) => c.secretName === secret)!.deployTokenId)!;
    const one = tokenOf('one-git');
    const two = tokenOf('two-git');

    await setFluxAccess(gw, agent.id, { rotateSeconds: 30 * DAY, entries: [projectEntry('acme/two', 'two-git')] });
    const after = await eventually(() => credentialsOf(gw, agent.id), (b) => b.credentials.find((c) => c.secretName === 'one-git')?.state === 'revoked', 10_000);
    expect(after.credentials.find((c) => c.secretName === 'one-git')!.revokeReason).toBe('removed from flux_access');
    expect(one.revoked).toBe(true);
    expect(two.revoked).toBe(false);

    expect((await gw.admin('DELETE', `/agents/${agent.id}`)).status).toBe(204);
    gw.ctx.fluxAccess.changed(agent.id);
    await eventually(() => two.revoked, (r) => r, 10_000);
    await eventually(() => queryInSchema(gw.schema, 'SELECT 1 FROM flux_credential_work WHERE agent_id = $1', [agent.id]), (rows) => rows.length === 0);
    expect(await queryInSchema(gw.schema, 'SELECT 1 FROM flux_credentials WHERE agent_id = $1', [agent.id])).toEqual([]);
  });

  it('never writes a token into a log line (at trace level) nor, in clear, into a database dump', async () => {
    // Every token the tests above made, and one more waiting unapplied now.
    project('acme/dumped');
    const agent = await gw.createAgent('dumped', 'acme/config');
    await setFluxAccess(gw, agent.id, { rotateSeconds: 30 * DAY, entries: [projectEntry('acme/dumped', 'dumped-git')] });
    await eventually(() => credentialsOf(gw, agent.id), (b) => b.credentials.length === 1, 10_000);
    const tokens = fake.gitlab.deployTokens.tokens.map((t) => t.token);
    expect(tokens.length).toBeGreaterThanOrEqual(9);

    const text = logged();
    expect(logLines.some((l) => l.includes('deploy token made for Flux'))).toBe(true);
    expect(logLines.some((l) => l.includes('"level":10') || l.includes('"level":20'))).toBe(true);
    for (const token of tokens) expect(text).not.toContain(token);

    const { stdout } = await promisify(execFile)('pg_dump', ['--data-only', '--schema', gw.schema, databaseUrl()], { maxBuffer: 64 * 1024 * 1024 });
    expect(stdout).toContain('flux_credentials');
    const waiting = await queryInSchema<{ n: number }>(gw.schema, 'SELECT count(*)::int AS n FROM flux_credentials WHERE sealed_token IS NOT NULL');
    expect(waiting[0]!.n).toBeGreaterThanOrEqual(1);
    for (const token of tokens) {
      expect(stdout).not.toContain(token);
      expect(stdout).not.toContain(Buffer.from(token).toString('hex'));
      expect(stdout).not.toContain(Buffer.from(token).toString('base64'));
    }
  });
});

describe('deploy tokens without KASGATE_ENCRYPTION_KEY', () => {
  const fake = useFakeGitLab();
  const gw = useGateway({ env: fake.env() });

  it('makes none, and says why on the agent and on /readyz (degraded, still ready)', async () => {
    fake.gitlab.addProject({ id: 1, path: 'acme/app', defaultBranch: 'main' });
    const agent = await gw.createAgent('keyless', 'acme/config');
    await setFluxAccess(gw, agent.id, { rotateSeconds: 30 * DAY, entries: [projectEntry('acme/app', 'app-git')] });
    const shown = await eventually(() => credentialsOf(gw, agent.id), (b) => b.error !== null, 10_000);
    expect(shown.error).toMatch(/KASGATE_ENCRYPTION_KEY is not set/);
    expect(shown.credentials).toEqual([]);
    expect(fake.gitlab.deployTokens.tokens).toHaveLength(0);
    const ready = await fetch(`${gw.url}/readyz`);
    expect(ready.status).toBe(200);
    expect(((await ready.json()) as { checks: Record<string, string> }).checks.credentials).toMatch(/^degraded: KASGATE_ENCRYPTION_KEY/);
  });
});
