/**
 * Flux's credentials (issue 14, agent side): `credentials` frames from a scripted peer become
 * Secrets in the test API server, written by server-side apply, answered with
 * credentials_applied or credentials_failed, never logged; with the RBAC of
 * deploy/agent/examples/flux-credentials (a Role per namespace) enforced.
 */
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import type { CredentialsFrame } from '../../src/protocol/kasgate-v1.js';
import { deployPath, rulesFromKustomization } from './support/fake-rbac.js';
import { createHarness, type Harness } from './support/harness.js';
import { ProtocolPeer, type PeerConnection } from './support/protocol-peer.js';
import { settle, waitFor } from './support/wait.js';

const TOKEN = 'kgagent_credentials-0123456789abcdef';
const USERNAME = 'gitlab+deploy-token-4711';
const PASSWORD = 'gldt-Zx9vQmR2sT7uWy3aBcDe';

let h: Harness;
let peer: ProtocolPeer;

afterEach(async () => {
  await h?.close();
  await peer?.close();
});

function credentials(overrides: Partial<CredentialsFrame> = {}): CredentialsFrame {
  return {
    type: 'credentials',
    id: 'cred-1',
    secretName: 'app-git',
    namespaces: ['apps'],
    kind: 'basic-auth',
    username: USERNAME,
    password: PASSWORD,
    registry: null,
    expiresAt: new Date(Date.now() + 90 * 86_400_000).toISOString(),
    ...overrides,
  };
}

const decode = (value: string | undefined): string | undefined => (value === undefined ? undefined : Buffer.from(value, 'base64').toString('utf8'));
const secret = (namespace: string, name = 'app-git') => h.kube.secrets.get(`${namespace}/${name}`);

/** Every log line the agent writes, at trace level. */
function captureLog(): { logger: pino.Logger; text: () => string } {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(chunk.toString());
      done();
    },
  });
  return { logger: pino({ level: 'trace' }, stream), text: () => lines.join('') };
}

async function start(kubeOptions: Parameters<typeof createHarness>[0] = {}): Promise<{ conn: PeerConnection; log: () => string }> {
  h = await createHarness(kubeOptions);
  peer = await new ProtocolPeer(TOKEN).start();
  peer.answerSubscribes = true;
  h.kube.putGitRepository('apps', 'app', { url: 'https://gitlab.example.com/group/app.git' });
  const { logger, text } = captureLog();
  await h.startAgent({ gatewayUrl: peer.url, agentToken: TOKEN }, logger);
  const conn = await peer.connection(0);
  await conn.nextFrame('subscribe');
  return { conn, log: text };
}

const answers = (conn: PeerConnection) => conn.frames.filter((f) => f.type === 'credentials_applied' || f.type === 'credentials_failed');

describe('credentials', () => {
  it('writes basic-auth credentials in every namespace by server-side apply, labelled, and answers credentials_applied once', async () => {
    const { conn } = await start();
    conn.send(credentials({ namespaces: ['apps', 'infra'] }));
    expect(await conn.nextFrame('credentials_applied')).toEqual({ type: 'credentials_applied', id: 'cred-1' });
    for (const namespace of ['apps', 'infra']) {
      const written = secret(namespace);
      // What Flux's GitRepository secretRef takes for HTTPS basic auth.
      expect(written?.['type']).toBe('Opaque');
      expect(decode(written?.['data']?.username)).toBe(USERNAME);
      expect(decode(written?.['data']?.password)).toBe(PASSWORD);
      expect(Object.keys(written?.['data'] ?? {}).sort()).toEqual(['password', 'username']);
      expect(written?.metadata['labels']).toEqual({ 'app.kubernetes.io/managed-by': 'kasgate' });
      expect(written?.metadata['annotations']).toMatchObject({ 'kasgate.io/credentials-id': 'cred-1' });
    }
    const applies = h.kube.applies.filter((a) => a.kind === 'Secret');
    // Forced: the Secret is kasgate's (labelled), and a hand edit must not keep Flux on an old token.
    expect(applies.map((a) => [a.namespace, a.name, a.contentType, a.fieldManager, a.force]).sort()).toEqual([
      ['apps', 'app-git', 'application/apply-patch+yaml', 'kasgate-agent', 'true'],
      ['infra', 'app-git', 'application/apply-patch+yaml', 'kasgate-agent', 'true'],
    ]);
    await settle(200);
    expect(answers(conn)).toHaveLength(1);
  });

  it('writes dockerconfigjson credentials for the registry, as an OCIRepository secretRef takes them', async () => {
    const { conn } = await start();
    conn.send(credentials({ id: 'reg-1', secretName: 'app-registry', kind: 'dockerconfigjson', registry: 'registry.example.com', namespaces: ['apps'] }));
    expect(await conn.nextFrame('credentials_applied')).toEqual({ type: 'credentials_applied', id: 'reg-1' });
    const written = secret('apps', 'app-registry');
    expect(written?.['type']).toBe('kubernetes.io/dockerconfigjson');
    expect(Object.keys(written?.['data'] ?? {})).toEqual(['.dockerconfigjson']);
    expect(JSON.parse(decode(written?.['data']['.dockerconfigjson']) as string)).toEqual({
      auths: {
        'registry.example.com': { username: USERNAME, password: PASSWORD, auth: Buffer.from(`${USERNAME}:${PASSWORD}`).toString('base64') },
      },
    });
  });

  it('refuses dockerconfigjson credentials without a registry, and writes nothing', async () => {
    const { conn } = await start();
    conn.send(credentials({ id: 'reg-2', kind: 'dockerconfigjson', registry: null }));
    const failed = await conn.nextFrame('credentials_failed');
    expect(failed).toMatchObject({ id: 'reg-2', message: expect.stringContaining('registry') });
    expect(h.kube.secrets.size).toBe(0);
  });

  it('rotates: new credentials for the same Secret replace the data; the old ones sent again do not roll it back', async () => {
    const { conn } = await start();
    conn.send(credentials({ id: 'old', expiresAt: new Date(Date.now() + 3_600_000).toISOString() }));
    await conn.nextFrame('credentials_applied');
    conn.send(credentials({ id: 'new', password: 'gldt-NEWNEWNEWNEWNEW', expiresAt: new Date(Date.now() + 7_200_000).toISOString() }));
    expect(await conn.nextFrame('credentials_applied', 1)).toEqual({ type: 'credentials_applied', id: 'new' });
    expect(decode(secret('apps')?.['data']?.password)).toBe('gldt-NEWNEWNEWNEWNEW');
    expect(secret('apps')?.metadata['annotations']['kasgate.io/credentials-id']).toBe('new');

    // A late copy of the old token (a replay after a reconnect): answered, and the Secret keeps the new one.
    conn.send(credentials({ id: 'old', expiresAt: new Date(Date.now() + 3_600_000).toISOString() }));
    expect(await conn.nextFrame('credentials_applied', 2)).toEqual({ type: 'credentials_applied', id: 'old' });
    expect(decode(secret('apps')?.['data']?.password)).toBe('gldt-NEWNEWNEWNEWNEW');
  });

  it('applying the same id again is harmless and answered again', async () => {
    const { conn } = await start();
    conn.send(credentials());
    await conn.nextFrame('credentials_applied');
    const first = structuredClone(secret('apps'));
    conn.send(credentials());
    expect(await conn.nextFrame('credentials_applied', 1)).toEqual({ type: 'credentials_applied', id: 'cred-1' });
    expect(secret('apps')?.['data']).toEqual(first?.['data']);
    expect(secret('apps')?.metadata['uid']).toBe(first?.metadata['uid']);
  });

  it('does not take over a Secret of that name that kasgate does not manage, says so, and writes it once that Secret is gone', async () => {
    const { conn } = await start();
    const foreign = { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'app-git', namespace: 'apps', uid: 'u-1' }, type: 'Opaque', data: { password: 'aGFuZC1tYWRl' } };
    h.kube.secrets.set('apps/app-git', structuredClone(foreign));
    conn.send(credentials({ namespaces: ['apps', 'infra'] }));
    const failed = await conn.nextFrame('credentials_failed');
    expect(failed.id).toBe('cred-1');
    expect(failed.message).toContain('apps: Secret apps/app-git exists and is not managed by kasgate');
    expect(failed.message).not.toContain('infra');
    expect(secret('apps')).toEqual(foreign); // untouched
    expect(decode(secret('infra')?.['data']?.password)).toBe(PASSWORD); // the other namespace got it

    // Tried again with backoff: once the admin removes the hand-made Secret, the agent writes it.
    h.kube.secrets.delete('apps/app-git');
    expect(await conn.nextFrame('credentials_applied', 0, 10_000)).toEqual({ type: 'credentials_applied', id: 'cred-1' });
    expect(decode(secret('apps')?.['data']?.password)).toBe(PASSWORD);
  });

  it('with a Role per namespace (deploy/agent/examples/flux-credentials): applied where the Role is, credentials_failed where it is not, applied once granted', async () => {
    const base = await rulesFromKustomization(deployPath('agent/base'));
    const perNamespace = await rulesFromKustomization(deployPath('agent/examples/flux-credentials'));
    expect(perNamespace.map((r) => r.namespace).sort()).toEqual(['apps', 'infra']);
    expect(perNamespace.every((r) => r.resources?.join() === 'secrets')).toBe(true);
    const rules = [...base, ...perNamespace];
    const { conn, log } = await start({ rbac: rules });
    conn.send(credentials({ namespaces: ['apps', 'infra', 'other'] }));
    const failed = await conn.nextFrame('credentials_failed');
    expect(failed.message).toMatch(/^other: forbidden: the agent may not get Secrets in namespace other/);
    expect(decode(secret('apps')?.['data']?.password)).toBe(PASSWORD);
    expect(decode(secret('infra')?.['data']?.password)).toBe(PASSWORD);
    expect(secret('other')).toBeUndefined();
    expect(h.kube.forbidden).toContainEqual({ apiGroup: '', resource: 'secrets', namespace: 'other', name: 'app-git', verb: 'get' });
    // Cluster-wide, the agent has no right at all on Secrets.
    expect(base.some((r) => r.resources?.includes('secrets'))).toBe(false);

    // The admin adds the Role in `other`: the next retry succeeds.
    rules.push(...perNamespace.filter((r) => r.namespace === 'apps').map((r) => ({ ...r, namespace: 'other' })));
    expect(await conn.nextFrame('credentials_applied', 0, 10_000)).toEqual({ type: 'credentials_applied', id: 'cred-1' });
    expect(decode(secret('other')?.['data']?.password)).toBe(PASSWORD);
    expect(log()).not.toContain(PASSWORD);
  });

  it('never logs the username or the password, in any form, not even when the API server fails', async () => {
    const rbac = [...(await rulesFromKustomization(deployPath('agent/base'))), ...(await rulesFromKustomization(deployPath('agent/examples/flux-credentials')))];
    const { conn, log } = await start({ rbac });
    conn.send(credentials({ namespaces: ['apps', 'nowhere'] }));
    conn.send(credentials({ id: 'reg-1', secretName: 'app-registry', kind: 'dockerconfigjson', registry: 'registry.example.com', namespaces: ['apps'] }));
    await conn.nextFrame('credentials_failed');
    await waitFor(() => conn.framesOf('credentials_applied').some((f) => f.id === 'reg-1'), 5000, 'the registry credentials');
    await settle(300);
    const text = log();
    expect(text).toContain('credentials received'); // the log is captured
    expect(text).toContain('"secretName":"app-git"');
    for (const secretForm of [
      PASSWORD,
      USERNAME,
      Buffer.from(PASSWORD).toString('base64'),
      Buffer.from(`${USERNAME}:${PASSWORD}`).toString('base64'),
      secret('apps', 'app-registry')?.['data']['.dockerconfigjson'] as string,
    ]) {
      expect(text).not.toContain(secretForm);
      expect(JSON.stringify(conn.frames)).not.toContain(secretForm);
    }
  });
});
