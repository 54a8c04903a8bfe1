/**
 * Deploy tokens end to end with the real agent: flux_access on the gateway → a deploy token on
 * the GitLab stand-in → the agent (src/agent, in-process) writes the Secret in the Kubernetes
 * stand-in, with the RBAC of deploy/agent (a Role per namespace) enforced → credentials_applied →
 * the gateway shows it applied; a short lifetime rotates the Secret's token and revokes the old
 * one; a namespace without the Role shows as failed.
 */
import { afterEach, describe, expect, it } from 'vitest';
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
