/**
 * Every kustomization under deploy/, rendered by `kubectl kustomize` as `kubectl apply -k` would,
 * and the objects checked for what an operator relies on: probes, the restricted security
 * context, a grace period that fits the drain, selectors that select, images set by the overlays,
 * configuration the gateway accepts, and no secret in the repository. Also docker-compose.yml.
 * Skipped, saying so, where kubectl is not installed.
 */
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';
import { checkServeConfig, loadConfig } from '../../src/config.js';
import { SHUTDOWN_DEADLINE_MS } from '../../src/cli/serve.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const DEPLOY = join(ROOT, 'deploy');
const AGENT_BASE = join(DEPLOY, 'agent', 'base');

const kubectl = (() => {
  try {
    execFileSync('kubectl', ['version', '--client'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();
if (!kubectl) console.warn('test/deploy/manifests.test.ts: kubectl is not installed; the manifests are not rendered or checked');

type K8sObject = {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  [key: string]: any;
};

const run = promisify(execFile);
async function render(dir: string): Promise<K8sObject[]> {
  const { stdout } = await run('kubectl', ['kustomize', dir], { maxBuffer: 16 * 1024 * 1024 });
  return parseAllDocuments(stdout)
    .map((doc) => doc.toJS() as K8sObject | null)
    .filter((o): o is K8sObject => o !== null);
}

/** Every directory under deploy/ that holds a kustomization.yaml. */
function kustomizations(dir = DEPLOY): string[] {
  const found = existsSync(join(dir, 'kustomization.yaml')) ? [dir] : [];
  for (const entry of readdirSync(dir)) {
    const path = join(dir, entry);
    if (statSync(path).isDirectory()) found.push(...kustomizations(path));
  }
  return found;
}

const needsAgentBase = (dir: string) => readFileSync(join(dir, 'kustomization.yaml'), 'utf8').includes('agent/base');

const one = (objects: K8sObject[], kind: string, name?: string): K8sObject => {
  const matching = objects.filter((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
  expect(matching.map((o) => `${o.kind} ${o.metadata.name}`)).toHaveLength(1);
  return matching[0]!;
};

const selects = (selector: Record<string, string>, labels: Record<string, string>) =>
  Object.keys(selector).length > 0 && Object.entries(selector).every(([k, v]) => labels[k] === v);

/** Renders a throwaway kustomization made of the given bases and components (paths under deploy/). */
const scratch: string[] = [];
async function composeKustomization(resources: string[], components: string[] = []): Promise<K8sObject[]> {
  const dir = await mkdtemp(join(tmpdir(), 'kasgate-kustomize-'));
  scratch.push(dir);
  const rel = (p: string) => relative(dir, join(DEPLOY, p));
  await writeFile(
    join(dir, 'kustomization.yaml'),
    `resources: ${JSON.stringify(resources.map(rel))}\ncomponents: ${JSON.stringify(components.map(rel))}\n`,
  );
  return render(dir);
}

afterAll(async () => {
  for (const dir of scratch) await rm(dir, { recursive: true, force: true });
});

/** The restricted Pod Security Standard, as far as the pod spec says it. */
function expectRestricted(deployment: K8sObject): void {
  const pod = deployment.spec.template.spec;
  const name = deployment.metadata.name;
  expect({ name, runAsNonRoot: pod.securityContext?.runAsNonRoot, seccomp: pod.securityContext?.seccompProfile?.type }).toEqual({
    name,
    runAsNonRoot: true,
    seccomp: 'RuntimeDefault',
  });
  for (const container of [...pod.containers, ...(pod.initContainers ?? [])]) {
    const sc = container.securityContext ?? {};
    expect({
      container: `${name}/${container.name}`,
      allowPrivilegeEscalation: sc.allowPrivilegeEscalation,
      readOnlyRootFilesystem: sc.readOnlyRootFilesystem,
      drop: sc.capabilities?.drop,
      privileged: sc.privileged ?? false,
    }).toEqual({ container: `${name}/${container.name}`, allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, drop: ['ALL'], privileged: false });
  }
}

/** A Secret's values, as written (stringData) or decoded (data). */
const secretValues = (secret: K8sObject): string[] => [
  ...Object.values((secret.stringData ?? {}) as Record<string, string>),
  ...Object.values((secret.data ?? {}) as Record<string, string>).map((v) => Buffer.from(v, 'base64').toString()),
];

const isPlaceholder = (value: string) => /replace-me/.test(value);

describe.skipIf(!kubectl)('deploy/: kubectl kustomize', () => {
  const dirs = kustomizations();
  const rendered = new Map<string, K8sObject[]>();

  beforeAll(async () => {
    for (const dir of dirs) {
      if (needsAgentBase(dir) && !existsSync(AGENT_BASE)) continue;
      rendered.set(relative(DEPLOY, dir), await render(dir));
    }
  }, 60_000);

  test('every kustomization renders', () => {
    expect(dirs.map((d) => relative(DEPLOY, d))).toEqual(
      expect.arrayContaining([
        'gateway/base',
        'gateway/components/monitoring',
        'gateway/components/network-policy',
        'overlays/gateway-beside-gitlab',
        'overlays/agent-in-cluster',
      ]),
    );
    const empty = [...rendered].filter(([, objects]) => objects.length === 0).map(([dir]) => dir);
    expect(empty).toEqual([]);
  });

  test('no Secret with a real value, rendered or in an example', () => {
    const real: string[] = [];
    for (const [dir, objects] of rendered) {
      for (const secret of objects.filter((o) => o.kind === 'Secret')) {
        if (!secretValues(secret).every(isPlaceholder)) real.push(`${dir}: Secret ${secret.metadata.name}`);
      }
    }
    const examples = kustomizations()
      .flatMap((dir) => readdirSync(dir).filter((f) => /secret.*\.ya?ml$/.test(f)).map((f) => join(dir, f)))
      .concat(existsSync(join(DEPLOY, 'secret.example.yaml')) ? [join(DEPLOY, 'secret.example.yaml')] : []);
    expect(examples.map((f) => relative(DEPLOY, f))).toContain('gateway/base/secret.example.yaml');
    for (const file of examples) {
      for (const doc of parseAllDocuments(readFileSync(file, 'utf8')).map((d) => d.toJS() as K8sObject)) {
        if (doc?.kind === 'Secret' && !secretValues(doc).every(isPlaceholder)) real.push(relative(DEPLOY, file));
      }
    }
    expect(real).toEqual([]);
  });

  test('every Deployment runs restricted', () => {
    const deployments = [...rendered.values()].flat().filter((o) => o.kind === 'Deployment');
    expect(deployments.length).toBeGreaterThan(0);
    for (const d of deployments) expectRestricted(d);
  });

  test('the overlays set the image, and put every object in a namespace', () => {
    const overlays = [...rendered.keys()].filter((dir) => dir.startsWith('overlays/'));
    expect(overlays).toContain('overlays/gateway-beside-gitlab');
    for (const dir of overlays) {
      const objects = rendered.get(dir)!;
      const images = objects
        .filter((o) => o.kind === 'Deployment')
        .flatMap((d) => d.spec.template.spec.containers.map((c: { name: string; image: string }) => `${dir}: ${d.metadata.name}/${c.name} ${c.image}`));
      expect(images.length).toBeGreaterThan(0);
      for (const image of images) expect(image).toMatch(/ registry\.example\.com\/platform\/kasgate:0\.1\.0$/);
      const clusterScoped = new Set(['Namespace', 'ClusterRole', 'ClusterRoleBinding']);
      const unplaced = objects.filter((x) => !clusterScoped.has(x.kind) && !x.metadata.namespace).map((o) => `${dir}: ${o.kind} ${o.metadata.name}`);
      expect(unplaced).toEqual([]);
    }
  });

  describe('the gateway base', () => {
    let objects: K8sObject[];
    let deployment: K8sObject;
    let pod: any;
    let container: any;
    beforeAll(async () => {
      objects = rendered.get('gateway/base')!;
      deployment = one(objects, 'Deployment', 'kasgate-gateway');
      pod = deployment.spec.template.spec;
      container = pod.containers.find((c: { name: string }) => c.name === 'gateway');
    });

    test('has what a gateway needs, and no Secret', () => {
      expect(objects.map((o) => o.kind).toSorted()).toEqual(
        ['ConfigMap', 'Deployment', 'HorizontalPodAutoscaler', 'PodDisruptionBudget', 'Service', 'ServiceAccount'].toSorted(),
      );
      expect(deployment.spec.replicas).toBe(2);
      expect(container.image).toBe('kasgate');
      expect(container.args).toEqual(['serve']);
      expect(container.resources.requests).toMatchObject({ cpu: expect.any(String), memory: expect.any(String) });
      expect(container.resources.limits.memory).toBeDefined();
      expect(pod.automountServiceAccountToken).toBe(false);
    });

    test('probes: readiness on /readyz, liveness on /healthz, on the container port', () => {
      const port = container.ports.find((p: { name: string }) => p.name === 'http');
      expect(port.containerPort).toBe(8080);
      expect(container.readinessProbe.httpGet).toEqual({ path: '/readyz', port: 'http' });
      expect(container.livenessProbe.httpGet).toEqual({ path: '/healthz', port: 'http' });
      expect(container.startupProbe.httpGet.path).toBe('/healthz');
    });

    test('preStop and the grace period fit the drain and the 10 s shutdown deadline', () => {
      const command = container.lifecycle.preStop.exec.command as string[];
      expect(command[0]).toBe('sleep');
      const preStopSeconds = Number(command[1]);
      expect(preStopSeconds).toBeGreaterThanOrEqual(3); // time for endpoints to drop the pod
      const config = one(objects, 'ConfigMap').data as Record<string, string>;
      const drainSeconds = Number(config.KASGATE_DRAIN_SECONDS);
      const deadlineSeconds = Math.ceil(SHUTDOWN_DEADLINE_MS / 1000);
      expect(drainSeconds).toBeLessThan(deadlineSeconds);
      // Kubernetes counts the grace period from the start of preStop; SIGKILL must never cut the drain.
      expect(pod.terminationGracePeriodSeconds).toBeGreaterThan(preStopSeconds + deadlineSeconds);
    });

    test('Service, PodDisruptionBudget and HPA point at these pods', () => {
      const labels = deployment.spec.template.metadata.labels;
      expect(selects(deployment.spec.selector.matchLabels, labels)).toBe(true);
      const service = one(objects, 'Service');
      expect(selects(service.spec.selector, labels)).toBe(true);
      expect(service.spec.ports).toEqual([expect.objectContaining({ name: 'http', port: 8080, targetPort: 'http' })]);
      const pdb = one(objects, 'PodDisruptionBudget');
      expect(pdb.apiVersion).toBe('policy/v1');
      expect(selects(pdb.spec.selector.matchLabels, labels)).toBe(true);
      expect(pdb.spec.maxUnavailable ?? deployment.spec.replicas - pdb.spec.minAvailable).toBeLessThan(deployment.spec.replicas);
      const hpa = one(objects, 'HorizontalPodAutoscaler');
      expect(hpa.apiVersion).toBe('autoscaling/v2');
      expect(hpa.spec.scaleTargetRef).toEqual({ apiVersion: 'apps/v1', kind: 'Deployment', name: deployment.metadata.name });
      expect(hpa.spec.minReplicas).toBe(deployment.spec.replicas);
      expect(hpa.spec.maxReplicas).toBeGreaterThan(hpa.spec.minReplicas);
    });

    test('configuration from the ConfigMap, secrets from the Secret; together the gateway accepts them', () => {
      const configMap = one(objects, 'ConfigMap');
      expect(container.envFrom).toEqual(
        expect.arrayContaining([{ configMapRef: { name: configMap.metadata.name } }, { secretRef: { name: 'kasgate-gateway' } }]),
      );
      const fromSecret = (container.env as { name: string; valueFrom?: { secretKeyRef?: { name: string; key: string } } }[])
        .filter((e) => e.valueFrom?.secretKeyRef)
        .map((e) => e.valueFrom!.secretKeyRef!);
      expect(fromSecret.map((r) => r.key).toSorted()).toEqual(['DATABASE_URL', 'KASGATE_ADMIN_TOKEN', 'KASGATE_WEBHOOK_SECRETS', 'REDIS_URL']);
      expect(new Set(fromSecret.map((r) => r.name))).toEqual(new Set(['kasgate-gateway']));
      // The example Secret has every key the pod requires, and with the ConfigMap makes a valid start.
      const example = parse(readFileSync(join(DEPLOY, 'gateway/base/secret.example.yaml'), 'utf8')) as K8sObject;
      expect(example.metadata.name).toBe('kasgate-gateway');
      for (const ref of fromSecret) expect(Object.keys(example.stringData)).toContain(ref.key);
      const config = loadConfig({ ...configMap.data, ...example.stringData });
      expect(() => checkServeConfig(config)).not.toThrow();
      expect(config.port).toBe(8080);
      expect(config.host).toBe('0.0.0.0');
    });
  });

  test('gateway beside GitLab: the Ingress routes the agents and the webhooks to the Service; its settings are valid', () => {
    const objects = rendered.get('overlays/gateway-beside-gitlab')!;
    const service = one(objects, 'Service', 'kasgate-gateway');
    const ingress = one(objects, 'Ingress');
    const paths = ingress.spec.rules.flatMap((r: any) => r.http.paths);
    expect(paths.map((p: any) => [p.path, p.pathType])).toEqual([
      ['/agent/v1/connect', 'Exact'],
      ['/webhooks/', 'Prefix'],
    ]);
    for (const p of paths) {
      expect(p.backend.service.name).toBe(service.metadata.name);
      expect(service.spec.ports.map((x: any) => x.name)).toContain(p.backend.service.port.name);
    }
    // WebSockets outlive nginx's 60 s default; webhooks up to the 1 MiB body limit get through.
    const annotations = ingress.metadata.annotations ?? {};
    expect(Number(annotations['nginx.ingress.kubernetes.io/proxy-read-timeout'])).toBeGreaterThan(60);
    expect(annotations['nginx.ingress.kubernetes.io/proxy-body-size']).toBe('2m');
    const config = loadConfig(one(objects, 'ConfigMap').data);
    expect(config.trustProxy).toMatch(/10\.0\.0\.0\/8/);
    expect(config.publicUrl).toBe('https://kasgate.example.com');
    // The overlay includes the network policy.
    one(objects, 'NetworkPolicy', 'kasgate-gateway');
  });

  test('network-policy component: selects the gateway pods; in on 8080 only; out to DNS, Postgres, Redis and GitLab', async () => {
    const objects = await composeKustomization(['gateway/base'], ['gateway/components/network-policy']);
    const labels = one(objects, 'Deployment').spec.template.metadata.labels;
    const policy = one(objects, 'NetworkPolicy');
    expect(selects(policy.spec.podSelector.matchLabels, labels)).toBe(true);
    expect(policy.spec.policyTypes).toEqual(['Ingress', 'Egress']);
    for (const rule of policy.spec.ingress) expect(rule.ports).toEqual([{ port: 'http', protocol: 'TCP' }]);
    const peers = policy.spec.ingress.flatMap((r: any) => r.from);
    expect(peers).toEqual(
      expect.arrayContaining([
        { namespaceSelector: {}, podSelector: { matchLabels: { 'app.kubernetes.io/name': 'ingress-nginx' } } },
        { podSelector: { matchLabels: { app: 'sidekiq' } } },
        { namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'kasgate-agent' } } },
      ]),
    );
    const egressPorts = policy.spec.egress.flatMap((r: any) => r.ports.map((p: any) => `${p.protocol}/${p.port}`));
    expect(egressPorts).toEqual(expect.arrayContaining(['UDP/53', 'TCP/53', 'TCP/5432', 'TCP/6379', 'TCP/443']));
  });

  test('monitoring component: a ServiceMonitor that scrapes /metrics on the Service port', async () => {
    const objects = await composeKustomization(['gateway/base'], ['gateway/components/monitoring']);
    const service = one(objects, 'Service');
    const monitor = one(objects, 'ServiceMonitor');
    expect(monitor.apiVersion).toBe('monitoring.coreos.com/v1');
    expect(selects(monitor.spec.selector.matchLabels, service.metadata.labels ?? {})).toBe(true);
    expect(monitor.spec.endpoints).toEqual([expect.objectContaining({ port: 'http', path: '/metrics' })]);
  });

  test('agent in a cluster: the overlay sets the image and both URLs', () => {
    const objects = rendered.get('overlays/agent-in-cluster');
    if (!objects) throw new Error('deploy/overlays/agent-in-cluster did not render');
    const agent = one(objects, 'Deployment', 'kasgate-agent');
    const env = Object.fromEntries(agent.spec.template.spec.containers[0].env.map((e: { name: string; value?: string }) => [e.name, e.value]));
    expect(env.KASGATE_URL).toBe('https://kasgate.example.com');
    expect(env.GITLAB_EXTERNAL_URL).toBe('https://gitlab.example.com');
  });

  test("Flux's credentials: a Role and RoleBinding per listed namespace, and no ClusterRole of the agent's base reaches Secrets", () => {
    const objects = rendered.get('agent/examples/flux-credentials');
    if (!objects) throw new Error('deploy/agent/examples/flux-credentials did not render');
    expect(objects.map((o) => `${o.kind} ${o.metadata.namespace}/${o.metadata.name}`).toSorted()).toEqual([
      'Role apps/kasgate-agent-credentials',
      'Role infra/kasgate-agent-credentials',
      'RoleBinding apps/kasgate-agent-credentials',
      'RoleBinding infra/kasgate-agent-credentials',
    ]);
    for (const role of objects.filter((o) => o.kind === 'Role')) {
      expect(role.rules).toEqual([{ apiGroups: [''], resources: ['secrets'], verbs: ['get', 'create', 'patch'] }]);
    }
    for (const binding of objects.filter((o) => o.kind === 'RoleBinding')) {
      expect(binding.roleRef).toEqual({ apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'kasgate-agent-credentials' });
      expect(binding.subjects).toEqual([{ kind: 'ServiceAccount', name: 'kasgate-agent', namespace: 'kasgate-agent' }]);
    }
    const base = rendered.get('agent/base');
    if (!base) throw new Error('deploy/agent/base did not render');
    expect(base.some((o) => o.kind === 'ClusterRole')).toBe(true);
    const secretRules = base
      .filter((o) => o.kind === 'ClusterRole')
      .flatMap((o) => (o.rules as { resources?: string[] }[]).filter((r) => r.resources?.includes('secrets') || r.resources?.includes('*')));
    expect(secretRules).toEqual([]);
  });
});

describe('docker-compose.yml', () => {
  const compose = parse(readFileSync(join(ROOT, 'docker-compose.yml'), 'utf8'), { merge: true }) as {
    services: Record<string, { environment?: Record<string, string>; ports?: string[] }>;
  };
  const gateways = Object.entries(compose.services).filter(([name]) => name.startsWith('gateway'));

  /** Compose's ${VAR}, ${VAR:-default} and ${VAR:?error}, for the given environment. */
  const interpolate = (text: string, env: Record<string, string>) =>
    text.replace(/\$\{(\w+)(?::([-?])([^}]*))?\}/g, (_m, name: string, op?: string, arg?: string) => {
      if (env[name]) return env[name];
      if (op === '-') return arg ?? '';
      throw new Error(`${name} is required: ${arg}`);
    });

  test('the Postgres password comes from the environment, the same for the server and the gateways', () => {
    expect(gateways.length).toBeGreaterThanOrEqual(2);
    const server = compose.services.postgres!.environment!;
    expect(server.POSTGRES_PASSWORD).toMatch(/^\$\{POSTGRES_PASSWORD:\?/);
    const env = { POSTGRES_PASSWORD: 'f00dcafe', KASGATE_ADMIN_TOKEN: 'a'.repeat(24), KASGATE_WEBHOOK_SECRETS: 'hook' };
    expect(() => interpolate(gateways[0]![1].environment!.DATABASE_URL!, {})).toThrow(/POSTGRES_PASSWORD is required/);
    for (const [name, service] of gateways) {
      const resolved = Object.fromEntries(Object.entries(service.environment!).map(([k, v]) => [k, interpolate(String(v), env)]));
      const config = loadConfig(resolved);
      expect(() => checkServeConfig(config)).not.toThrow();
      // Behind nginx: its X-Forwarded-For is believed, from the compose network's private ranges only,
      // and nginx is the only way in (no published port).
      expect({ name, password: new URL(resolved.DATABASE_URL!).password, trustProxy: config.trustProxy, ports: service.ports }).toEqual({
        name,
        password: 'f00dcafe',
        trustProxy: '10.0.0.0/8,172.16.0.0/12,192.168.0.0/16',
        ports: undefined,
      });
    }
    expect(readFileSync(join(ROOT, 'docker-compose.yml'), 'utf8')).not.toMatch(/kasgate:kasgate@|POSTGRES_PASSWORD: kasgate/);
  });
});
