/**
 * docs/quickstart.md cannot rot: every shell block in it is either run here, in bash, against a
 * real gateway process (```sh), or needs a cluster (```sh cluster) or GitLab (```sh gitlab) and is
 * checked against what it acts on: the rendered manifests, the agent's code. A command this test
 * does not know fails it; so does a check whose command left the page.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { parse as parseYaml, parseAllDocuments } from 'yaml';
import { parseConfigFile } from '../../src/agents/config-file/parse.js';
import { loadConfig } from '../../src/config.js';
import { connectAgent } from '../support/agent-client.js';
import { spawnKasgate, type KasgateProcess } from '../support/kasgate-process.js';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const DOC = await readFile(join(ROOT, 'docs/quickstart.md'), 'utf8');
/** The address the page uses; the test's gateway listens on a port of its own. */
const DOCUMENTED_URL = 'http://127.0.0.1:8080';

interface Block {
  lang: string;
  tag: string;
  /** One command per entry, continuation lines joined. */
  commands: string[];
  text: string;
}

function blocks(markdown: string): Block[] {
  return [...markdown.matchAll(/^```(\w*)[ \t]*([^\n]*)\n([\s\S]*?)^```$/gm)].map(([, lang, tag, text]) => ({
    lang: lang!,
    tag: tag!.trim(),
    text: text!,
    commands: text!
      .replace(/\\\n\s*/g, ' ')
      .split('\n')
      .map((line) => line.trim())
      .filter((line) => line && !line.startsWith('#')),
  }));
}

const all = blocks(DOC);
const shell = all.filter((b) => b.lang === 'sh');
const here = shell.filter((b) => b.tag === '');
const cluster = shell.filter((b) => b.tag === 'cluster').flatMap((b) => b.commands);
const gitlab = shell.filter((b) => b.tag === 'gitlab').flatMap((b) => b.commands);
const startsGateway = (b: Block) => b.commands.includes('make run');

test('the page has only blocks this test knows: sh (here), sh cluster, sh gitlab, yaml', () => {
  expect(shell.length).toBeGreaterThan(5);
  expect(all.filter((b) => !(b.lang === 'yaml' || (b.lang === 'sh' && ['', 'cluster', 'gitlab'].includes(b.tag)))).map((b) => `${b.lang} ${b.tag}`)).toEqual([]);
});

test('`make run` is the `serve` this test starts, on a build of the same source', async () => {
  const makefile = await readFile(join(ROOT, 'Makefile'), 'utf8');
  expect(/^run: \$\(BUILT\)\n\tnode dist\/main\.js serve$/m.test(makefile)).toBe(true);
  expect(here[0]!.commands).toEqual(['make run']);
});

test('the flux_access restart: the gateway accepts the variables it exports', async () => {
  const restart = here.filter(startsGateway).slice(1);
  expect(restart).toHaveLength(1);
  const exports = restart[0]!.commands.filter((c) => c !== 'make run');
  expect(exports.every((c) => c.startsWith('export '))).toBe(true);
  const { stdout } = await run('bash', ['-c', `set -euo pipefail; ${exports.join('\n')}\nnode -e 'process.stdout.write(JSON.stringify(process.env))'`], {
    env: { PATH: process.env.PATH, GITLAB_API_TOKEN: 'glpat-quickstart' },
  });
  const env = JSON.parse(stdout) as Record<string, string>;
  const config = loadConfig({ ...env, KASGATE_DATA_DIR: join(tmpdir(), 'never-opened') });
  expect(config.gitlab?.url).toBe('https://gitlab.example.com');
  expect(config.encryptionKey?.length).toBe(32);
});

test('no GitLab here: the one command that needs it is the push itself', () => {
  expect(gitlab).toEqual(['git commit --allow-empty -m "kasgate quickstart" && git push']);
});

describe('against a real gateway', () => {
  const work: { dir: string; gateway?: KasgateProcess; url: string } = { dir: '', url: '' };
  /** Bash with every variable exported (set -a) and carried from block to block in a state file. */
  const tsx = fileURLToPath(import.meta.resolve('tsx'));

  async function runBlock(block: Block): Promise<string> {
    const script = [
      'set -euo pipefail -a',
      `kasgate() { node --import '${tsx}' '${join(ROOT, 'src/main.ts')}' "$@"; }`,
      'source ./state.sh',
      ...block.commands.map((c) => c.replaceAll(DOCUMENTED_URL, work.url)),
      'export -p > ./state.sh',
    ].join('\n');
    const { stdout } = await run('bash', ['-c', script], { cwd: work.dir, env: { PATH: process.env.PATH, HOME: work.dir }, timeout: 30_000 });
    return stdout;
  }
  const stateVar = async (name: string) =>
    (await run('bash', ['-c', `source ./state.sh; printf %s "$${name}"`], { cwd: work.dir, env: { PATH: process.env.PATH } })).stdout;

  beforeAll(async () => {
    work.dir = await mkdtemp(join(tmpdir(), 'kasgate-quickstart-'));
    await writeFile(join(work.dir, 'state.sh'), '');
    // What `make run` runs, from the source, with its data dir where the page's commands read it (./data).
    work.gateway = spawnKasgate(['serve'], { KASGATE_DATA_DIR: join(work.dir, 'data'), PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'info' });
    const listening = await work.gateway.waitForLog(/^kasgate listening$/, 30_000);
    work.url = `http://127.0.0.1:${String(listening.port)}`;
  }, 60_000);

  afterAll(async () => {
    if (work.gateway?.child.exitCode === null) await work.gateway.stop();
    await rm(work.dir, { recursive: true, force: true });
  });

  test('every command of the sh blocks runs, in order, and does what the page says', { timeout: 60_000 }, async () => {
    const runnable = here.filter((b) => !startsGateway(b));
    const find = (what: string) => {
      const block = runnable.find((b) => b.commands.some((c) => c.startsWith(what)));
      if (!block) throw new Error(`no sh block runs ${what}`);
      return block;
    };
    const [setup, register, push, watch, grants] = [
      find('WEBHOOK_SECRET='),
      find('AGENT_TOKEN='),
      find('curl -sS --fail-with-body "$KASGATE_URL/webhooks/gitlab"'),
      find('curl -sS --fail-with-body -H "Authorization'),
      find('kasgate grants set'),
    ];
    expect(new Set([setup, register, push, watch, grants]).size).toBe(5);
    expect(runnable.length).toBe(5);
    // In the page's order: each needs what the one before it set.
    expect(runnable).toEqual([setup, register, push, watch, grants]);

    await runBlock(setup); // exits 0, or runBlock throws: the CLI found the gateway and its admin token
    expect(await stateVar('WEBHOOK_SECRET')).toBe(JSON.parse(await readFile(join(work.dir, 'data/secrets.json'), 'utf8')).webhookSecret);

    const shown = await runBlock(register);
    expect(shown).toContain('prod');
    expect(shown).toContain('platform/prod');
    const token = await stateVar('AGENT_TOKEN');
    expect(token).toMatch(/^kgagent_/);

    // The agent the page registered, connected as the in-cluster agent would be: the push reaches it.
    const agent = await connectAgent(work.url.replace('http', 'ws'), token);
    try {
      const subscribed = await agent.subscribe(['platform/prod']);
      expect(subscribed.projects).toEqual([{ path: 'platform/prod', access: 'granted' }]);
      const pushed = await runBlock(push);
      expect(pushed).toMatch(/\{"status":"accepted","eventId":"1",.*"duplicate":false\}/);
      expect(pushed).toMatch(/platform\/prod/);
      const frame = await agent.waitFor((f) => f.type === 'push');
      expect(frame).toMatchObject({ type: 'push', eventId: '1', project: { path: 'platform/prod' }, ref: 'refs/heads/main' });
      // Sent again, as the page says: a duplicate, and no second notification.
      const again = await runBlock({ ...push, commands: push.commands.filter((c) => c.startsWith('curl')) });
      expect(again).toContain('"duplicate":true');

      const watched = await runBlock(watch);
      expect(watched).toContain('platform/prod');
      expect(watched).toMatch(/"events":\[\{"kind":"push","id":"1"|"events":\[\{.*"id":"1"/);
    } finally {
      await agent.close();
    }

    const granted = await runBlock(grants);
    expect(granted).toContain('platform/app');
    expect(granted).toContain('platform/shared');

    // Ctrl-C in the first terminal: a clean stop, with no warning on the way out.
    const before = work.gateway!.lines().length;
    expect((await work.gateway!.stop()).code).toBe(0);
    const warnings = work.gateway!
      .lines()
      .slice(before)
      .flatMap((line) => (line.startsWith('{') ? [JSON.parse(line) as { level: number; msg: string }] : []))
      .filter((entry) => entry.level >= 40);
    expect(warnings).toEqual([]);
  });
});

describe('the cluster commands, against the manifests they apply', () => {
  let overlay: K8sObject[];
  let gitops: K8sObject[];
  beforeAll(async () => {
    overlay = await render('deploy/overlays/agent-in-cluster');
    gitops = await render('deploy/agent/examples/gitops');
  }, 60_000);

  const agentDeployment = () => one(overlay, 'Deployment', 'kasgate-agent');
  const gitRepository = () => one(gitops, 'GitRepository', 'prod');
  const agentSource = async (text: string) => {
    const { stdout } = await run('grep', ['-rlF', text, join(ROOT, 'src/agent')]);
    return stdout.trim().length > 0;
  };

  const checks: Record<string, () => Promise<void> | void> = {
    'kubectl apply -f deploy/agent/base/namespace.yaml': async () => {
      const [ns] = parseAllDocuments(await readFile(join(ROOT, 'deploy/agent/base/namespace.yaml'), 'utf8')).map((d) => d.toJS() as K8sObject);
      expect(ns).toMatchObject({ kind: 'Namespace', metadata: { name: 'kasgate-agent' } });
      expect(agentDeployment().metadata.namespace).toBe('kasgate-agent');
    },
    'kubectl -n kasgate-agent create secret generic kasgate-agent-token --from-literal=token="$AGENT_TOKEN"': () => {
      const pod = agentDeployment().spec.template.spec;
      const volume = pod.volumes.find((v: { secret?: { secretName: string } }) => v.secret?.secretName === 'kasgate-agent-token');
      expect(volume.secret.items).toEqual([{ key: 'token', path: 'token' }]);
      const container = pod.containers.find((c: { name: string }) => c.name === 'agent');
      const mount = container.volumeMounts.find((m: { name: string }) => m.name === volume.name);
      const file = container.env.find((e: { name: string }) => e.name === 'KASGATE_AGENT_TOKEN_FILE');
      expect(file.value).toBe(`${mount.mountPath}/token`);
    },
    'kubectl apply -k deploy/overlays/agent-in-cluster': () => {
      expect(overlay.map((o) => o.kind)).toEqual(expect.arrayContaining(['Namespace', 'ServiceAccount', 'ClusterRole', 'ClusterRoleBinding', 'Deployment']));
    },
    'kubectl -n kasgate-agent rollout status deploy/kasgate-agent': () => {
      expect(agentDeployment().metadata.namespace).toBe('kasgate-agent');
    },
    'kubectl apply -k deploy/agent/examples/gitops': () => {
      const repo = gitRepository();
      const env = agentDeployment().spec.template.spec.containers[0].env as { name: string; value: string }[];
      const gitlabUrl = new URL(env.find((e) => e.name === 'GITLAB_EXTERNAL_URL')!.value);
      // On the host the agent watches, and the agent's configuration project.
      expect(new URL(repo.spec.url).host).toBe(gitlabUrl.host);
      expect(new URL(repo.spec.url).pathname).toBe('/platform/prod.git');
      expect(repo.spec.ref).toEqual({ branch: 'main' });
      expect(one(gitops, 'Kustomization', 'prod').spec.sourceRef).toEqual({ kind: 'GitRepository', name: 'prod' });
      // The rights for flux_access to write prod-git there, to the agent's ServiceAccount.
      const binding = one(gitops, 'RoleBinding', 'kasgate-agent-credentials');
      expect(binding.metadata.namespace).toBe('flux-system');
      const sa = one(overlay, 'ServiceAccount', 'kasgate-agent');
      expect(binding.subjects).toEqual([{ kind: 'ServiceAccount', name: sa.metadata.name, namespace: sa.metadata.namespace }]);
    },
    'kubectl -n flux-system create secret generic prod-git --from-literal=username="$DEPLOY_TOKEN_USERNAME" --from-literal=password="$DEPLOY_TOKEN"': () => {
      // Flux reads basic auth from the keys username and password of spec.secretRef, in the source's namespace.
      expect(gitRepository().metadata.namespace).toBe('flux-system');
      expect(gitRepository().spec.secretRef).toEqual({ name: 'prod-git' });
    },
    'kubectl -n kasgate-agent logs deploy/kasgate-agent': async () => {
      expect(agentDeployment().metadata.namespace).toBe('kasgate-agent');
      // The lines the page says to look for.
      for (const line of ['connected to the gateway', 'reconcile requested']) {
        expect(DOC).toContain(`\`${line}\``);
        expect(await agentSource(`'${line}'`)).toBe(true);
      }
    },
    "kubectl -n flux-system get gitrepository prod -o jsonpath='{.metadata.annotations.reconcile\\.fluxcd\\.io/requestedAt}'": async () => {
      expect(gitRepository().metadata.namespace).toBe('flux-system');
      expect(await agentSource('reconcile.fluxcd.io/requestedAt')).toBe(true);
    },
    'kubectl -n flux-system get kustomization prod': () => {
      expect(one(gitops, 'Kustomization', 'prod').metadata.namespace).toBe('flux-system');
    },
  };

  test('every cluster command of the page has a check here, and every check a command there', () => {
    expect([...cluster].sort()).toEqual(Object.keys(checks).sort());
  });

  test.skipIf(!kubectlAvailable).each(Object.keys(checks))('%s', async (command) => {
    expect.hasAssertions();
    await checks[command]!();
  });

  test.skipIf(!kubectlAvailable)("the configuration file's flux_access writes the Secret the GitRepository reads", () => {
    const yamlBlocks = all.filter((b) => b.lang === 'yaml');
    expect(yamlBlocks).toHaveLength(1);
    const file = parseYaml(yamlBlocks[0]!.text) as { flux_access: FluxAccess };
    const { rotate, projects, groups } = file.flux_access;
    expect(rotate).toMatch(/^\d+[smhd]$/);
    const entries = [...projects, ...groups];
    expect(entries.length).toBe(2);
    for (const entry of entries) {
      expect(Object.keys(entry).sort()).toEqual(['id', 'namespaces', 'role', 'secret_name']);
      expect(['read_repository', 'read_registry']).toContain(entry.role);
      // Only entries under the configuration project's top-level group count.
      expect(entry.id.split('/')[0]).toBe('platform');
    }
    const repo = gitRepository();
    const feeding = projects.find((p) => p.id === 'platform/prod')!;
    expect(feeding.secret_name).toBe(repo.spec.secretRef.name);
    expect(feeding.namespaces).toContain(repo.metadata.namespace);
    expect(DOC).toContain('`.gitlab/agents/prod/config.yaml`');
    // The gateway's own reader takes the file as it stands, refusing nothing.
    const parsed = parseConfigFile(yamlBlocks[0]!.text, 'platform/prod');
    expect(parsed).toMatchObject({ ok: true, file: { refused: [], fluxAccess: { rotateSeconds: 90 * 86_400 } } });
    expect(parsed.ok && parsed.file.fluxAccess?.entries.map((e) => `${e.kind} ${e.path} ${e.secretName}`)).toEqual([
      'project platform/prod prod-git',
      'group platform/apps apps-git',
    ]);
  });
});

interface FluxAccessEntry {
  id: string;
  role: string;
  secret_name: string;
  namespaces: string[];
}
interface FluxAccess {
  rotate: string;
  projects: FluxAccessEntry[];
  groups: FluxAccessEntry[];
}

// oxlint-disable-next-line typescript/no-explicit-any -- rendered Kubernetes objects, read field by field
type K8sObject = { kind: string; metadata: { name: string; namespace?: string }; [key: string]: any };

const kubectlAvailable = await run('kubectl', ['version', '--client']).then(
  () => true,
  () => false,
);

async function render(dir: string): Promise<K8sObject[]> {
  if (!kubectlAvailable) return [];
  const { stdout } = await run('kubectl', ['kustomize', join(ROOT, dir)], { maxBuffer: 16 * 1024 * 1024 });
  return parseAllDocuments(stdout).map((d) => d.toJS() as K8sObject);
}

function one(objects: K8sObject[], kind: string, name: string): K8sObject {
  const found = objects.filter((o) => o.kind === kind && o.metadata.name === name);
  expect(found.map((o) => `${o.kind}/${o.metadata.name}`)).toEqual([`${kind}/${name}`]);
  return found[0]!;
}
