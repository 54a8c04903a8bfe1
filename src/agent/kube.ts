/**
 * Kubernetes access: configuration, Flux CRD discovery, and the watch of Flux objects (sources,
 * Kustomizations, HelmReleases).
 */
import {
  ApiException,
  CustomObjectsApi,
  KubeConfig,
  KubernetesObjectApi,
  makeInformer,
  type Informer,
  type KubernetesListObject,
  type KubernetesObject,
} from '@kubernetes/client-node';
import type { Logger } from 'pino';

/** In-cluster configuration by default; the kubeconfig file when one is given. */
export function loadKubeConfig(kubeconfigPath: string | undefined): KubeConfig {
  const kc = new KubeConfig();
  if (kubeconfigPath) kc.loadFromFile(kubeconfigPath);
  else kc.loadFromCluster();
  return kc;
}

/** Field manager of everything the agent writes (server-side apply, annotation patches). */
export const FIELD_MANAGER = 'kasgate-agent';

export interface CrdRef {
  group: string;
  version: string;
  plural: string;
  kind: string;
}

export const GIT_REPOSITORY: CrdRef = {
  group: 'source.toolkit.fluxcd.io',
  version: 'v1',
  plural: 'gitrepositories',
  kind: 'GitRepository',
};

export const OCI_REPOSITORY: CrdRef = {
  group: 'source.toolkit.fluxcd.io',
  version: 'v1',
  plural: 'ocirepositories',
  kind: 'OCIRepository',
};

export const RECEIVER: CrdRef = {
  group: 'notification.toolkit.fluxcd.io',
  version: 'v1',
  plural: 'receivers',
  kind: 'Receiver',
};

/** kustomize-controller's Kustomization (docs/spec/v1/kustomizations.md). */
export const KUSTOMIZATION: CrdRef = {
  group: 'kustomize.toolkit.fluxcd.io',
  version: 'v1',
  plural: 'kustomizations',
  kind: 'Kustomization',
};

/** helm-controller's HelmRelease (api/v2/helmrelease_types.go). */
export const HELM_RELEASE: CrdRef = {
  group: 'helm.toolkit.fluxcd.io',
  version: 'v2',
  plural: 'helmreleases',
  kind: 'HelmRelease',
};

export const crdName = (crd: CrdRef): string => `${crd.plural}.${crd.group}/${crd.version}`;

export const apiVersionOf = (crd: CrdRef): string => `${crd.group}/${crd.version}`;

export const isNotFound = (err: unknown): boolean => err instanceof ApiException && err.code === 404;

/** KubernetesObjectApi with its API discovery lookup (`GET /apis/<group>/<version>`) made public. */
export class DiscoveringObjectApi extends KubernetesObjectApi {
  lookupResource(apiVersion: string, kind: string) {
    return this.resource(apiVersion, kind);
  }
}

/** Which of `crds` (by `plural.group/version`) API discovery does not list. */
export async function missingCrds(kc: KubeConfig, crds: readonly CrdRef[]): Promise<string[]> {
  // A fresh client each time: the discovery answer is cached per client, and CRDs come and go.
  const discovery = kc.makeApiClient(DiscoveringObjectApi);
  const missing: string[] = [];
  for (const crd of crds) {
    try {
      const resource = await discovery.lookupResource(`${crd.group}/${crd.version}`, crd.kind);
      if (resource?.name !== crd.plural) missing.push(crdName(crd));
    } catch (err) {
      if (!isNotFound(err)) throw err;
      missing.push(crdName(crd));
    }
  }
  return missing;
}

export interface WatchHandlers {
  onUpsert(obj: KubernetesObject): void;
  onDelete(obj: KubernetesObject): void;
}

export interface SourceWatch {
  /** Resolves once every watched scope has been listed successfully once. */
  readonly synced: Promise<void>;
  /** Resolves once every watched scope has been listed, or has failed once (its objects then come later, as changes). */
  readonly settled: Promise<void>;
  stop(): Promise<void>;
}

/**
 * List + watch objects of a Flux kind in all namespaces (no `namespaces`) or in each given one.
 * A watch that fails is started again after `retryMs` (the informer relists, so nothing is missed).
 */
export function watchObjects(
  kc: KubeConfig,
  crd: CrdRef,
  namespaces: string[],
  handlers: WatchHandlers,
  retryMs: number,
  logger: Logger,
): SourceWatch {
  const custom = kc.makeApiClient(CustomObjectsApi);
  const { group, version, plural } = crd;
  const scopes: (string | undefined)[] = namespaces.length > 0 ? namespaces : [undefined];
  const timers = new Set<NodeJS.Timeout>();
  let stopped = false;

  const informers = scopes.map((namespace) => {
    const path = namespace
      ? `/apis/${group}/${version}/namespaces/${encodeURIComponent(namespace)}/${plural}`
      : `/apis/${group}/${version}/${plural}`;
    let markListed: () => void = () => {};
    const listed = new Promise<void>((resolve) => (markListed = resolve));
    let markSettled: () => void = () => {};
    const settled = new Promise<void>((resolve) => (markSettled = resolve));
    void listed.then(() => markSettled());
    const list = async (): Promise<KubernetesListObject<KubernetesObject>> => {
      const result = (await (namespace
        ? custom.listNamespacedCustomObject({ group, version, namespace, plural })
        : custom.listClusterCustomObject({ group, version, plural }))) as KubernetesListObject<KubernetesObject>;
      // After the informer has taken the items (it does so right after this returns), not before.
      setImmediate(markListed);
      return result;
    };
    const informer: Informer<KubernetesObject> = makeInformer(kc, path, list);
    informer.on('add', handlers.onUpsert);
    informer.on('update', handlers.onUpsert);
    informer.on('delete', handlers.onDelete);
    informer.on('error', (err: unknown) => {
      markSettled();
      if (stopped) return;
      logger.warn({ err: describeError(err), scope: namespace ?? 'all namespaces' }, `${crd.kind} watch failed; retrying`);
      const timer = setTimeout(() => {
        timers.delete(timer);
        if (!stopped) entry.starting = informer.start();
      }, retryMs);
      timers.add(timer);
    });
    const entry = { informer, listed, settled, starting: informer.start() };
    return entry;
  });

  return {
    synced: Promise.all(informers.map((i) => i.listed)).then(() => undefined),
    settled: Promise.all(informers.map((i) => i.settled)).then(() => undefined),
    async stop() {
      stopped = true;
      for (const timer of timers) clearTimeout(timer);
      await Promise.all(
        informers.map(async (i) => {
          await i.informer.stop();
          // A watch request still waiting for its response headers cannot be aborted yet: let it
          // answer (briefly), then stop again so that its connection is closed, not left open.
          await Promise.race([i.starting, new Promise((resolve) => setTimeout(resolve, 2000).unref())]);
          await i.informer.stop();
        }),
      );
    },
  };
}

/** A short description of a client-node error, without request headers (which hold credentials). */
export function describeError(err: unknown): string {
  if (err instanceof ApiException) return `HTTP ${err.code}: ${summarizeBody(err.body)}`;
  if (err instanceof Error) {
    const status = (err as { statusCode?: unknown }).statusCode;
    return typeof status === 'number' ? `HTTP ${status}: ${err.message}` : err.message;
  }
  return String(err);
}

function summarizeBody(body: unknown): string {
  if (body && typeof body === 'object' && 'message' in body) return String((body as { message: unknown }).message);
  return typeof body === 'string' ? body.slice(0, 200) : 'request failed';
}

/** The HTTP status of a failed Kubernetes API call; undefined for a network error or a timeout. */
export function statusOf(err: unknown): number | undefined {
  if (err instanceof ApiException) return err.code;
  const status = (err as { statusCode?: unknown } | undefined)?.statusCode;
  return typeof status === 'number' ? status : undefined;
}
