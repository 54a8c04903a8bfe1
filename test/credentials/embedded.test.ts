/**
 * Embedded mode with the GitLab API and no KASGATE_ENCRYPTION_KEY: the gateway keeps a key of its
 * own in the data dir's secrets file (beside the admin token it generated), so flux_access works
 * with no more set-up, and the key is never logged.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { useGateway } from '../support/gateway.js';
import { useFakeGitLab } from '../support/use-fake-gitlab.js';
import { connectAgent } from '../support/agent-client.js';
import { nextProjectId } from '../support/fixtures.js';
import { credentialsOf, isCredentials } from './support.js';

describe('embedded, with the GitLab API and no encryption key configured', () => {
  const fake = useFakeGitLab();
  const logLines: string[] = [];
  const gw = useGateway({ embedded: true, env: fake.env({ LOG_LEVEL: 'debug' }), logLines });

  it('generates a key into secrets.json and makes deploy tokens with it', async () => {
    const config = fake.gitlab.addProject({ id: nextProjectId(), path: 'acme/config', defaultBranch: 'main' });
    fake.gitlab.addProject({ id: nextProjectId(), path: 'acme/app', defaultBranch: 'main' });
    fake.gitlab.files.put(config.id, '.gitlab/agents/edge/config.yaml', 'flux_access:\n  projects:\n    - id: acme/app\n      secret_name: app-git\n      namespaces: [apps]\n');
    const agent = await gw.createAgent('edge', 'acme/config');
    const socket = await connectAgent(gw.wsUrl, agent.token);
    const frame = await socket.waitFor(isCredentials, 10_000);
    expect(frame).toMatchObject({ secretName: 'app-git', kind: 'basic-auth' });
    expect((await credentialsOf(gw, agent.id)).error).toBeNull();

    const secrets = JSON.parse(await readFile(join(gw.env.KASGATE_DATA_DIR!, 'secrets.json'), 'utf8')) as { encryptionKey: string };
    expect(Buffer.from(secrets.encryptionKey, 'base64')).toHaveLength(32);
    expect(logLines.join('')).not.toContain(secrets.encryptionKey);
    expect(logLines.join('')).not.toContain(frame.password);
    await socket.close();
  });
});
