/**
 * RBAC for the test API server: maps a request to (apiGroup, resource, namespace, verb) as the
 * real API server does, and checks it against the rules of the (Cluster)Roles that a
 * kustomization of deploy/agent installs: a ClusterRole's rules hold in every namespace, a
 * Role's only in its own (its `metadata.namespace`, or the `namespace:` of the kustomization
 * that includes it, as kustomize sets it). Discovery is open to every authenticated client
 * (system:discovery), as in a real cluster.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadAllYaml, loadYaml } from '@kubernetes/client-node';

export interface PolicyRule {
  /** The Role's namespace; absent for a ClusterRole's rule (every namespace). */
  namespace?: string;
  apiGroups?: string[];
  resources?: string[];
  resourceNames?: string[];
  verbs: string[];
}

export interface RequestAttributes {
  apiGroup: string;
  resource: string;
  /** Absent for a cluster-scoped request (a list or watch across namespaces). */
  namespace?: string | undefined;
  name?: string | undefined;
  verb: string;
}

interface ManifestFile {
  path: string;
  /** The `namespace:` a kustomization sets on everything it includes (the outermost one wins). */
  namespace?: string | undefined;
}

/** The rules of every Role and ClusterRole in the given manifest files. */
export async function rulesFromManifests(...files: (string | ManifestFile)[]): Promise<PolicyRule[]> {
  const rules: PolicyRule[] = [];
  for (const file of files) {
    const { path, namespace } = typeof file === 'string' ? { path: file, namespace: undefined } : file;
    for (const doc of loadAllYaml(await readFile(path, 'utf8'))) {
      if (doc?.kind === 'ClusterRole') rules.push(...((doc.rules ?? []) as PolicyRule[]));
      if (doc?.kind === 'Role') {
        const roleNamespace = namespace ?? doc.metadata?.namespace ?? 'default';
        rules.push(...((doc.rules ?? []) as PolicyRule[]).map((rule) => ({ ...rule, namespace: roleNamespace })));
      }
    }
  }
  return rules;
}

/**
 * The rules of every Role and ClusterRole a kustomization (or component) directory installs:
 * its `resources` (files, or directories with a kustomization of their own) and `components`,
 * followed as kustomize follows them, plus the extra `components` given (as an overlay would).
 */
export async function rulesFromKustomization(directory: string, components: string[] = []): Promise<PolicyRule[]> {
  const files = await manifestFiles(directory);
  for (const component of components) files.push(...(await manifestFiles(component)));
  return rulesFromManifests(...files);
}

async function manifestFiles(directory: string, outerNamespace?: string): Promise<ManifestFile[]> {
  const kustomization = loadYaml<{ resources?: string[]; components?: string[]; namespace?: string }>(
    await readFile(join(directory, 'kustomization.yaml'), 'utf8'),
  );
  const namespace = outerNamespace ?? kustomization.namespace;
  const files: ManifestFile[] = [];
  for (const entry of [...(kustomization.resources ?? []), ...(kustomization.components ?? [])]) {
    const path = join(directory, entry);
    if (/\.ya?ml$/.test(entry)) files.push({ path, namespace });
    else files.push(...(await manifestFiles(path, namespace)));
  }
  return files;
}

/** A path under the project's deploy/ directory. */
export const deployPath = (relative: string): string => fileURLToPath(new URL(`../../../deploy/${relative}`, import.meta.url));

/** Request → attributes; undefined for discovery, which needs no rule. */
export function attributesOf(method: string, path: string, query: URLSearchParams): RequestAttributes | undefined {
  const match = /^\/(?:api\/v1|apis\/([^/]+)\/[^/]+)(?:\/namespaces\/([^/]+))?\/([^/]+)(?:\/([^/]+))?(?:\/([^/]+))?/.exec(path);
  if (!match) return undefined;
  const [, group = '', namespace, resource = '', name, subresource] = match;
  const watching = query.get('watch') === 'true' || query.get('watch') === '1';
  const verb =
    method === 'GET'
      ? name === undefined
        ? watching
          ? 'watch'
          : 'list'
        : 'get'
      : ({ POST: 'create', PUT: 'update', PATCH: 'patch', DELETE: 'delete' } as Record<string, string>)[method] ?? method.toLowerCase();
  // The proxy subresource: `services/proxy`, named after the service (with its port, if given).
  if (subresource === 'proxy') return { apiGroup: group, resource: `${resource}/proxy`, namespace, name, verb: method === 'GET' ? 'get' : verb };
  return { apiGroup: group, resource, namespace, name, verb };
}

export function allows(rules: PolicyRule[], request: RequestAttributes): boolean {
  return rules.some(
    (rule) =>
      (rule.namespace === undefined || rule.namespace === request.namespace) &&
      matches(rule.apiGroups, request.apiGroup) &&
      matches(rule.resources, request.resource) &&
      matches(rule.verbs, request.verb) &&
      (rule.resourceNames === undefined || rule.resourceNames.length === 0 || (request.name !== undefined && rule.resourceNames.includes(request.name))),
  );
}

const matches = (list: string[] | undefined, value: string): boolean => (list ?? []).some((item) => item === '*' || item === value);
