/**
 * Deploy tokens end to end with the real agent: flux_access on the gateway → a deploy token on
 * the GitLab stand-in → the agent (src/agent, in-process) writes the Secret in the Kubernetes
 * stand-in, with the RBAC of deploy/agent (a Role per namespace) enforced → credentials_applied →
 * the gateway shows it applied; a short lifetime rotates the Secret's token and revokes the old
 * one; a namespace without the Role shows as failed. And from the agent's config file in its
 * config project on the GitLab stand-in, with no call to kasgate's API: the file's flux_access
 * makes the token, a push that removes the entry revokes it.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { pushBody } from '../support/fixtures.js';
import { useGateway } from '../support/gateway.js';
import { useFakeGitLab } from '../support/use-fake-gitlab.js';
import { eventually } from '../support/agent-client.js';
import { createHarness, REGISTRY_HOST, type Harness } from '../agent/support/harness.js';
import { deployPath, rulesFromKustomization } from '../agent/support/fake-rbac.js';
import { credentialsOf, encryptionKey, projectEntry, setFluxAccess } from './support.js';

const decode = (value: string | undefined) => (value === undefined ? undefined : Buffer.from(value, 'base64').toString('utf8'));

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

describe('deploy tokens through the real agent', () => {
  const fake = useFakeGitLab();
  const gw = useGateway({ env: fake.env({ KASGATE_ENCRYPTION_KEY: encryptionKey(), KASGATE_REGISTRY_HOST: REGISTRY_HOST }) });

  async function startAgentFor(name: string) {
    const rbac = [...(await rulesFromKustomization(deployPath('agent/base'))), ...(await rulesFromKustomization(deployPath('agent/examples/flux-credentials')))];
    h = await createHarness({ rbac });
    h.kube.putGitRepository('apps', 'app', { url: 'https://gitlab.example.com/acme/app.git' });
    const agent = await gw.createAgent(name, 'acme/config');
    const handle = await h.startAgent({ gatewayUrl: gw.url, agentToken: agent.token });
    await eventually(() => handle.status().ready, (ready) => ready, 10_000);
    return agent;
  }

  it('writes the token as the Secret Flux reads, in every listed namespace, rotates it before it expires and revokes the old one', async () => {
    fake.gitlab.addProject({ id: 1, path: 'acme/app', defaultBranch: 'main' });
    const agent = await startAgentFor('e2e-tokens');
    await setFluxAccess(gw, agent.id, { rotateSeconds: 6, entries: [projectEntry('acme/app', 'app-git', { namespaces: ['apps', 'infra'] })] });

    const applied = await eventually(() => credentialsOf(gw, agent.id), (b) => b.credentials[0]?.state === 'applied', 10_000);
    const first = fake.gitlab.deployTokens.tokens.find((t) => t.id === applied.credentials[0]!.deployTokenId)!;
    for (const namespace of ['apps', 'infra']) {
      const secret = h!.kube.secrets.get(`${namespace}/app-git`);
      expect(decode(secret?.['data']?.username)).toBe(first.username);
      expect(decode(secret?.['data']?.password)).toBe(first.token);
      expect(secret?.metadata['labels']).toEqual({ 'app.kubernetes.io/managed-by': 'kasgate' });
    }
    expect(fake.gitlab.deployTokens.works(first.token)).toBe(true);

    // Two thirds of 6 s: a new token, written by the agent, and only then the old one revoked.
    const rotated = await eventually(
      () => credentialsOf(gw, agent.id),
      (b) => b.credentials.length === 2 && b.credentials.every((c) => c.state === (c.deployTokenId === first.id ? 'revoked' : 'applied')),
      12_000,
    );
    const second = fake.gitlab.deployTokens.tokens.find((t) => t.id === rotated.credentials.find((c) => c.state === 'applied')!.deployTokenId)!;
    expect(decode(h!.kube.secrets.get('apps/app-git')?.['data']?.password)).toBe(second.token);
    expect(decode(h!.kube.secrets.get('infra/app-git')?.['data']?.password)).toBe(second.token);
    expect(first.revoked).toBe(true);
    expect(fake.gitlab.deployTokens.works(second.token)).toBe(true);
    // Revoked after the agent had applied the new token.
    expect(first.revokedAt!).toBeGreaterThanOrEqual(Date.parse(rotated.credentials.find((c) => c.deployTokenId === second.id)!.appliedAt!));
    await setFluxAccess(gw, agent.id, null);
    await eventually(() => second.revoked, (r) => r, 10_000);
  });

  it('a namespace without the Role shows as failed with the API server’s refusal; the others get the Secret', async () => {
    fake.gitlab.addProject({ id: 2, path: 'acme/locked', defaultBranch: 'main' });
    const agent = await startAgentFor('e2e-locked');
    await setFluxAccess(gw, agent.id, { rotateSeconds: 86_400, entries: [projectEntry('acme/locked', 'locked-git', { namespaces: ['apps', 'nowhere'] })] });
    const failed = await eventually(() => credentialsOf(gw, agent.id), (b) => b.credentials[0]?.state === 'failed', 10_000);
    expect(failed.credentials[0]!.lastError).toMatch(/nowhere/);
    expect(h!.kube.secrets.get('apps/locked-git')).toBeDefined();
    expect(h!.kube.secrets.get('nowhere/locked-git')).toBeUndefined();
  });
});

describe('deploy tokens from the config file, through the real agent', () => {
  const fake = useFakeGitLab();
  const gw = useGateway({ env: fake.env({ KASGATE_ENCRYPTION_KEY: encryptionKey(), KASGATE_CONFIG_REFRESH: '1h' }) });

  it('flux_access in .gitlab/agents/<name>/config.yaml makes the token the agent writes; a push removing the entry revokes it', async () => {
    const config = fake.gitlab.addProject({ id: 50, path: 'fleet/cluster-config', defaultBranch: 'main' });
    fake.gitlab.addProject({ id: 51, path: 'fleet/app', defaultBranch: 'main' });
    const file = '.gitlab/agents/fleet-agent/config.yaml';
    fake.gitlab.files.put(config.id, file, 'flux_access:\n  rotate: 30d\n  projects:\n    - id: fleet/app\n      role: read_repository\n      secret_name: app-git\n      namespaces: [apps]\n');
    const rbac = [...(await rulesFromKustomization(deployPath('agent/base'))), ...(await rulesFromKustomization(deployPath('agent/examples/flux-credentials')))];
    h = await createHarness({ rbac });
    h.kube.putGitRepository('apps', 'app', { url: 'https://gitlab.example.com/fleet/app.git', secretRef: { name: 'app-git' } });
    const agent = await gw.createAgent('fleet-agent', config.path);
    await h.startAgent({ gatewayUrl: gw.url, agentToken: agent.token });

    const applied = await eventually(() => credentialsOf(gw, agent.id), (b) => b.credentials[0]?.state === 'applied', 15_000);
    const token = fake.gitlab.deployTokens.tokens.find((t) => t.id === applied.credentials[0]!.deployTokenId)!;
    expect(token).toMatchObject({ name: 'kasgate-fleet-agent-app-git', scopes: ['read_repository'], owner: { kind: 'project', id: 51 } });
    expect(Date.parse(token.expiresAt!) - token.createdAt).toBeGreaterThan(30 * 86_400_000 - 5000);
    expect(decode(h.kube.secrets.get('apps/app-git')?.['data']?.password)).toBe(token.token);
    expect(fake.gitlab.deployTokens.works(token.token)).toBe(true);

    fake.gitlab.files.put(config.id, file, 'flux: {}\n');
    const pushed = await gw.postWebhook(
      pushBody({ path: config.path, projectId: config.id, visibility: 0, ref: 'refs/heads/main', defaultBranch: 'main', after: randomBytes(20).toString('hex') }),
      { 'idempotency-key': randomUUID() },
    );
    expect(pushed.status).toBe(202);
    await eventually(() => token.revoked, (revoked) => revoked, 15_000);
    expect((await credentialsOf(gw, agent.id)).credentials[0]).toMatchObject({ state: 'revoked', revokeReason: 'removed from flux_access' });
  });
});
