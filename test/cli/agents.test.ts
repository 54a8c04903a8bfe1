/**
 * `kasgate agents` and `kasgate tokens`, run as a process against a real gateway: what a person
 * reads in the tables, what a script gets from --json, and that the tokens it prints work.
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, test } from 'vitest';
import { connectAgent } from '../support/agent-client.js';
import { useGateway } from '../support/gateway.js';
import { adminCli } from '../support/kasgate-cli.js';
import { useFakeGitLab } from '../support/use-fake-gitlab.js';
import { nextProjectId } from '../support/fixtures.js';

const gateway = useGateway();
const kasgate = (...args: string[]) => adminCli(gateway)(...args);

/** The rows of a table, each split on its column gaps. */
function rows(table: string): string[][] {
  return table
    .trim()
    .split('\n')
    .map((line) => line.split(/ {3,}/));
}

describe('agents', () => {
  test('create prints the agent and its token once, saying it will not be shown again; the token connects', async () => {
    const created = await kasgate('agents', 'create', 'prod-eu', '--config-project', 'platform/clusters/prod-eu');
    expect(created.code).toBe(0);
    expect(created.stdout).toMatch(/^Agent prod-eu created\./);
    expect(created.stdout).toMatch(/only time the token is shown[\s\S]*cannot show it again/);
    const token = /^ {2}(kgagent_\S+)$/m.exec(created.stdout)?.[1];
    expect(token).toBeDefined();
    const [header, row] = rows(created.stdout.split('\n\n')[1]!);
    expect(header).toEqual(['NAME', 'ID', 'CONFIG PROJECT']);
    expect(row![0]).toBe('prod-eu');
    expect(row![2]).toBe('platform/clusters/prod-eu');

    const agent = await connectAgent(gateway.wsUrl, token!);
    const hello = await agent.waitFor((f) => f.type === 'hello');
    expect(hello).toMatchObject({ agentId: row![1] });

    // While it is connected, list counts its connection and show lists it.
    const listed = await kasgate('agents', 'list');
    expect(listed.code).toBe(0);
    const table = rows(listed.stdout);
    expect(table[0]).toEqual(['NAME', 'ID', 'CONFIG PROJECT', 'CONNECTIONS', 'AGE']);
    expect(table.find((r) => r[0] === 'prod-eu')).toEqual(['prod-eu', row![1], 'platform/clusters/prod-eu', '1', expect.stringMatching(/^\d+s$/)]);

    const shown = await kasgate('agents', 'show', 'prod-eu');
    expect(shown.code).toBe(0);
    expect(shown.stdout).toMatch(/^Name: +prod-eu$/m);
    expect(shown.stdout).toMatch(/^Config project: +platform\/clusters\/prod-eu$/m);
    expect(shown.stdout).toMatch(/^Connections: +1$/m);
    expect(shown.stdout).toMatch(/^Config error: +-$/m);
    expect(shown.stdout).toMatch(/^CONNECTION +REPLICA +ADDRESS/m);
    expect(shown.stdout).not.toContain(token!);
    await agent.close();
  });

  test('--json gives the API shapes, for scripts; show takes a name or an id', async () => {
    const created = await kasgate('agents', 'create', 'staging', '--config-project', 'platform/staging', '--config', '{"flux":{"webhookReceiverUrl":"http://nc.flux-system"}}', '--json');
    expect(created.code).toBe(0);
    const body = JSON.parse(created.stdout) as { agent: { id: string; name: string; config: unknown }; token: { token: string } };
    expect(body.agent).toMatchObject({ name: 'staging', configProject: 'platform/staging', config: { flux: { webhookReceiverUrl: 'http://nc.flux-system' } } });
    expect(body.token.token).toMatch(/^kgagent_/);

    const byId = JSON.parse((await kasgate('agents', 'show', body.agent.id, '--json')).stdout);
    const byName = JSON.parse((await kasgate('agents', 'show', 'staging', '--json')).stdout);
    expect(byId).toEqual(byName);
    expect(byId).toEqual({ agent: body.agent, grants: { projects: [], groups: [] }, connections: [], credentials: { credentials: [], error: null } });

    const listed = JSON.parse((await kasgate('agents', 'list', '--json')).stdout) as { agents: { name: string }[] };
    expect(listed.agents.map((a) => a.name)).toContain('staging');
  });

  test('delete removes the agent: its live socket closes with 4401, and it is gone (exit 3 afterwards)', async () => {
    const created = JSON.parse((await kasgate('agents', 'create', 'doomed', '--config-project', 'g/doomed', '--json')).stdout);
    const agent = await connectAgent(gateway.wsUrl, created.token.token);
    await agent.waitFor((f) => f.type === 'hello');

    const deleted = await kasgate('agents', 'delete', 'doomed');
    expect(deleted.code).toBe(0);
    expect(deleted.stdout).toBe(`Agent doomed (${created.agent.id}) deleted.\n`);
    expect((await agent.closed).code).toBe(4401);

    for (const args of [['agents', 'show', 'doomed'], ['agents', 'delete', created.agent.id]]) {
      const again = await kasgate(...args);
      expect(again.code).toBe(3);
      expect(again.stderr).toMatch(/^kasgate: agent .* not found/);
    }
  });
});

describe('tokens', () => {
  test('create, list, revoke by prefix: the revoked token is refused, the new one works', async () => {
    const first = JSON.parse((await kasgate('agents', 'create', 'rotating', '--config-project', 'g/rotating', '--json')).stdout);
    const issued = await kasgate('tokens', 'create', 'rotating');
    expect(issued.code).toBe(0);
    expect(issued.stdout).toMatch(/only time the token is shown/);
    const second = /^ {2}(kgagent_\S+)$/m.exec(issued.stdout)![1]!;

    const listed = await kasgate('tokens', 'list', 'rotating');
    expect(listed.code).toBe(0);
    const table = rows(listed.stdout);
    expect(table[0]).toEqual(['ID', 'PREFIX', 'CREATED', 'LAST USED', 'REVOKED']);
    expect(table.slice(1).map((r) => r[1])).toEqual([first.token.prefix, second.slice(0, first.token.prefix.length)]);
    expect(listed.stdout).not.toContain(first.token.token);
    expect(listed.stdout).not.toContain(second);

    const live = await connectAgent(gateway.wsUrl, first.token.token);
    await live.waitFor((f) => f.type === 'hello');
    const revoked = await kasgate('tokens', 'revoke', 'rotating', first.token.prefix);
    expect(revoked.code).toBe(0);
    expect(revoked.stdout).toMatch(new RegExp(`^Token ${first.token.prefix}… \\(${first.token.id}\\) of agent rotating revoked\\.`));
    expect((await live.closed).code).toBe(4401);
    await expect(connectAgent(gateway.wsUrl, first.token.token)).rejects.toThrow(/401/);
    const fresh = await connectAgent(gateway.wsUrl, second);
    await fresh.waitFor((f) => f.type === 'hello');
    await fresh.close();

    const json = JSON.parse((await kasgate('tokens', 'list', 'rotating', '--json')).stdout) as { tokens: { id: string; revokedAt: string | null }[] };
    expect(json.tokens.find((t) => t.id === first.token.id)?.revokedAt).not.toBeNull();

    // Revoking it again: it is no longer a live token.
    const twice = await kasgate('tokens', 'revoke', 'rotating', first.token.prefix);
    expect(twice.code).toBe(3);
    expect(twice.stderr).toMatch(/has no live token/);
  });
});

describe('agents show, with the GitLab API', () => {
  const fake = useFakeGitLab();
  const gitlabGateway = useGateway({ env: fake.env({ KASGATE_ENCRYPTION_KEY: randomBytes(32).toString('base64'), KASGATE_CONFIG_REFRESH: '1h' }) });
  const cli = (...args: string[]) => adminCli(gitlabGateway)(...args);

  test("shows the config file, what it refused, and Flux's deploy tokens (never their secret)", async () => {
    const config = fake.gitlab.addProject({ id: nextProjectId(), path: 'acme/cluster-config', defaultBranch: 'main' });
    fake.gitlab.addProject({ id: nextProjectId(), path: 'acme/app', defaultBranch: 'main' });
    fake.gitlab.files.put(
      config.id,
      '.gitlab/agents/edge/config.yaml',
      'flux_access:\n  projects:\n    - id: acme/app\n      secret_name: app-git\n      namespaces: [apps]\n    - id: elsewhere/app\n      secret_name: stolen\n      namespaces: [apps]\n',
    );
    expect((await cli('agents', 'create', 'edge', '--config-project', 'acme/cluster-config')).code).toBe(0);
    const shown = await eventuallyShown(() => cli('agents', 'show', 'edge'), (out) => /^app-git +apps +acme\/app +read_repository +(created|sent) /m.test(out));
    expect(shown).toMatch(/^Config file: +acme\/cluster-config:\.gitlab\/agents\/edge\/config\.yaml at main \([0-9a-f]{8}\), read /m);
    expect(shown).toMatch(/^Config error: +.*elsewhere\/app/m);
    expect(shown).toMatch(/^Deploy tokens: +1$/m);
    expect(shown).toMatch(/^SECRET +NAMESPACES +FOR +ROLE +STATE +EXPIRES +ERROR$/m);
    for (const token of fake.gitlab.deployTokens.tokens) expect(shown).not.toContain(token.token);
  });
});

async function eventuallyShown(run: () => Promise<{ code: number | null; stdout: string }>, done: (stdout: string) => boolean): Promise<string> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const { code, stdout } = await run();
    expect(code).toBe(0);
    if (done(stdout) || Date.now() > deadline) return stdout;
    await new Promise((r) => setTimeout(r, 200));
  }
}
