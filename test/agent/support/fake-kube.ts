/**
 * A test Kubernetes API server over plain HTTP: API discovery for core/v1 and the Flux CRD
 * groups (source, kustomize, helm, notification); GitRepository, OCIRepository, Kustomization
 * and HelmRelease list + watch, get, and JSON merge patch (`application/merge-patch+json`,
 * RFC 7386, as `kubectl patch --type=merge` and `flux reconcile` send); server-side apply of
 * Secrets and Receivers, Secret and Receiver GET, and the service proxy
 * (`/api/v1/namespaces/<ns>/services/<svc>/proxy/...`). It checks the bearer token and (when
 * given) RBAC like a real API server, namespaced Roles included, and emulates
 * notification-controller setting a Receiver's `status.webhookPath` (or lets the test set it).
 * With `controllers`, source-, kustomize- and helm-controller stand-ins move status as Flux
 * does (fake-flux-controllers.ts).
 */
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { FakeFluxControllers, type ControllerOptions } from './fake-flux-controllers.js';
import { fluxWebhookPath } from './fake-flux-receiver.js';
import { allows, attributesOf, type PolicyRule, type RequestAttributes } from './fake-rbac.js';

export type Obj = { apiVersion?: string; kind?: string; metadata: Record<string, any>; [key: string]: any };

const NOTIFICATION = '/apis/notification.toolkit.fluxcd.io/v1';

export interface ApplyRecord {
  kind: string;
  namespace: string;
  name: string;
  contentType: string;
  fieldManager: string | null;
  force: string | null;
  body: Obj;
}

export type SourceKind = 'GitRepository' | 'OCIRepository';
export type FluxObjectKind = SourceKind | 'Kustomization' | 'HelmRelease';

/** Where each Flux kind is served, and which `crds` switch serves it. */
export const FLUX_KINDS: Record<FluxObjectKind, { group: string; version: string; plural: string; crd: keyof FakeKube['crds'] }> = {
  GitRepository: { group: 'source.toolkit.fluxcd.io', version: 'v1', plural: 'gitrepositories', crd: 'gitRepositories' },
  OCIRepository: { group: 'source.toolkit.fluxcd.io', version: 'v1', plural: 'ocirepositories', crd: 'ociRepositories' },
  Kustomization: { group: 'kustomize.toolkit.fluxcd.io', version: 'v1', plural: 'kustomizations', crd: 'kustomizations' },
  HelmRelease: { group: 'helm.toolkit.fluxcd.io', version: 'v2', plural: 'helmreleases', crd: 'helmReleases' },
};
const KIND_NAMES = Object.keys(FLUX_KINDS) as FluxObjectKind[];

export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED';
export type ObjectListener = (type: WatchEventType, object: Obj) => void;

export interface SourcePatch {
  kind: FluxObjectKind;
  namespace: string;
  name: string;
  contentType: string;
  fieldManager: string | null;
  body: Record<string, any>;
  /** The patch was refused by an injected failure. */
  failed?: number | 'dropped';
}

export interface FakeKubeOptions {
  token?: string;
  crds?: { gitRepositories?: boolean; ociRepositories?: boolean; kustomizations?: boolean; helmReleases?: boolean; receivers?: boolean };
  /** Set `status.webhookPath` on applied Receivers as notification-controller would (default true). */
  fluxController?: boolean;
  /** Enforce these RBAC rules (403 otherwise); no enforcement when absent. */
  rbac?: PolicyRule[];
  /** Run the Flux controller stand-ins (status moves as Flux moves it); off when absent. */
  controllers?: boolean | ControllerOptions;
}

export class FakeKube {
  readonly token: string;
  crds: { gitRepositories: boolean; ociRepositories: boolean; kustomizations: boolean; helmReleases: boolean; receivers: boolean };
  fluxController: boolean;
  readonly gitRepositories = new Map<string, Obj>();
  readonly ociRepositories = new Map<string, Obj>();
  readonly kustomizations = new Map<string, Obj>();
  readonly helmReleases = new Map<string, Obj>();
  /** Source-, kustomize- and helm-controller stand-ins (when the `controllers` option is set). */
  readonly flux: FakeFluxControllers | undefined;
  /** Told of every change to a Flux object, after watchers (the controller stand-ins listen here). */
  readonly listeners = new Set<ObjectListener>();
  /** Every PATCH of a source object, in arrival order (refused ones included, marked failed). */
  readonly sourcePatches: SourcePatch[] = [];
  /** Answers for the next source patches, in order, before handling them normally: a status, or 'drop' to cut the connection. */
  readonly failSourcePatches: (number | 'drop')[] = [];
  readonly secrets = new Map<string, Obj>();
  readonly receivers = new Map<string, Obj>();
  readonly applies: ApplyRecord[] = [];
  readonly unauthorized: string[] = [];
  readonly forbidden: RequestAttributes[] = [];
  readonly rbac: PolicyRule[] | undefined;
  /** Requests the service proxy forwarded. */
  proxied = 0;
  /** Where the service proxy forwards: `namespace/service` → base URL. */
  readonly services = new Map<string, string>();
  private resourceVersion = 1;
  private readonly history: { rv: number; type: string; object: Obj }[] = [];
  private readonly watchers = new Set<{ kind: FluxObjectKind; namespace: string | undefined; res: http.ServerResponse }>();
  private server: http.Server | undefined;
  url = '';

  constructor(options: FakeKubeOptions = {}) {
    this.token = options.token ?? `kube-${randomUUID()}`;
    this.crds = { gitRepositories: true, ociRepositories: true, kustomizations: true, helmReleases: true, receivers: true, ...options.crds };
    this.fluxController = options.fluxController ?? true;
    this.rbac = options.rbac;
    if (options.controllers) this.flux = new FakeFluxControllers(this, options.controllers === true ? {} : options.controllers);
  }

  async start(): Promise<this> {
    this.server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => void this.handle(req, res, Buffer.concat(chunks)).catch((err: unknown) => send(res, 500, status(500, String(err)))));
    });
    await new Promise<void>((resolve) => this.server?.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  async close(): Promise<void> {
    this.flux?.stop();
    for (const w of this.watchers) w.res.end();
    this.watchers.clear();
    this.server?.closeAllConnections();
    await new Promise<void>((resolve) => this.server?.close(() => resolve()) ?? resolve());
  }

  /** A kubeconfig document pointing at this server with its token. */
  kubeconfig(): string {
    return JSON.stringify({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'fake', cluster: { server: this.url, 'insecure-skip-tls-verify': true } }],
      users: [{ name: 'agent', user: { token: this.token } }],
      contexts: [{ name: 'fake', context: { cluster: 'fake', user: 'agent', namespace: 'default' } }],
      'current-context': 'fake',
    });
  }

  putGitRepository(namespace: string, name: string, spec: Record<string, unknown>): Obj {
    return this.putSource('GitRepository', namespace, name, spec);
  }

  putOciRepository(namespace: string, name: string, spec: Record<string, unknown>): Obj {
    return this.putSource('OCIRepository', namespace, name, spec);
  }

  putKustomization(namespace: string, name: string, spec: Record<string, unknown>): Obj {
    return this.putSource('Kustomization', namespace, name, { prune: true, ...spec });
  }

  putHelmRelease(namespace: string, name: string, spec: Record<string, unknown>): Obj {
    return this.putSource('HelmRelease', namespace, name, spec);
  }

  deleteGitRepository(namespace: string, name: string): void {
    this.deleteSource('GitRepository', namespace, name);
  }

  sourcesOf(kind: FluxObjectKind): Map<string, Obj> {
    return { GitRepository: this.gitRepositories, OCIRepository: this.ociRepositories, Kustomization: this.kustomizations, HelmRelease: this.helmReleases }[kind];
  }

  get(kind: FluxObjectKind, namespace: string, name: string): Obj | undefined {
    return this.sourcesOf(kind).get(`${namespace}/${name}`);
  }

  /** What a controller's status update does (the status subresource): a new resourceVersion, a MODIFIED event, the same generation. */
  setStatus(kind: FluxObjectKind, namespace: string, name: string, update: (previous: Record<string, any>) => Record<string, any>): Obj | undefined {
    const map = this.sourcesOf(kind);
    const existing = map.get(`${namespace}/${name}`);
    if (!existing) return undefined;
    const updated: Obj = {
      ...existing,
      metadata: { ...existing.metadata, resourceVersion: String(++this.resourceVersion) },
      status: update(structuredClone(existing['status'] ?? {})),
    };
    map.set(`${namespace}/${name}`, updated);
    this.emit('MODIFIED', updated);
    return updated;
  }

  /** What an API client's merge patch of the annotation does (notification-controller's Receiver, `flux reconcile`). */
  annotate(kind: FluxObjectKind, namespace: string, name: string, annotations: Record<string, string>): void {
    const map = this.sourcesOf(kind);
    const existing = map.get(`${namespace}/${name}`);
    if (!existing) return;
    const updated = mergePatch(existing, { metadata: { annotations } }) as Obj;
    updated.metadata = { ...updated.metadata, resourceVersion: String(++this.resourceVersion) };
    map.set(`${namespace}/${name}`, updated);
    this.emit('MODIFIED', updated);
  }

  /** The `reconcile.fluxcd.io/requestedAt` annotation of a source, as Flux would read it. */
  requestedAt(kind: FluxObjectKind, namespace: string, name: string): string | undefined {
    return this.sourcesOf(kind).get(`${namespace}/${name}`)?.metadata['annotations']?.['reconcile.fluxcd.io/requestedAt'];
  }

  /** Successful merge patches per source, as `Kind/namespace/name` → count. */
  patchCounts(): Record<string, number> {
    const counts: Record<string, number> = {};
    for (const p of this.sourcePatches) {
      if (p.failed !== undefined) continue;
      const key = `${p.kind}/${p.namespace}/${p.name}`;
      counts[key] = (counts[key] ?? 0) + 1;
    }
    return counts;
  }

  /** Creates or replaces an object's spec (status kept, generation bumped when the spec changes), as `kubectl apply` does. */
  private putSource(kind: FluxObjectKind, namespace: string, name: string, spec: Record<string, unknown>): Obj {
    const key = `${namespace}/${name}`;
    const map = this.sourcesOf(kind);
    const existing = map.get(key);
    const { group, version } = FLUX_KINDS[kind];
    const fullSpec = { interval: '10m', ...spec };
    const changed = JSON.stringify(existing?.['spec']) !== JSON.stringify(fullSpec);
    const object: Obj = {
      apiVersion: `${group}/${version}`,
      kind,
      metadata: {
        ...existing?.metadata,
        name,
        namespace,
        uid: existing?.metadata.uid ?? randomUUID(),
        generation: (existing?.metadata['generation'] ?? 0) + (changed ? 1 : 0),
        resourceVersion: String(++this.resourceVersion),
      },
      spec: fullSpec,
      ...(existing?.['status'] ? { status: existing['status'] } : {}),
    };
    map.set(key, object);
    this.emit(existing ? 'MODIFIED' : 'ADDED', object);
    return object;
  }

  deleteSource(kind: FluxObjectKind, namespace: string, name: string): void {
    const key = `${namespace}/${name}`;
    const map = this.sourcesOf(kind);
    const object = map.get(key);
    if (!object) return;
    map.delete(key);
    // Owner-reference garbage collection, as the real cluster would do.
    for (const owned of [this.secrets, this.receivers]) {
      for (const [k, o] of owned) if (o.metadata.ownerReferences?.some((r: any) => r.uid === object.metadata.uid)) owned.delete(k);
    }
    this.emit('DELETED', { ...object, metadata: { ...object.metadata, resourceVersion: String(++this.resourceVersion) } });
  }

  /**
   * Someone rotates a Receiver's token in its Secret. With `fluxNotices`, notification-controller
   * reconciles the Receivers that use it and gives them the new path (as it does for a Secret it
   * watches, or at its next interval); without, they keep the old path until then.
   */
  rotateSecretToken(namespace: string, name: string, token: string, fluxNotices: boolean): void {
    const secret = this.secrets.get(`${namespace}/${name}`);
    if (!secret) throw new Error(`no Secret ${namespace}/${name}`);
    secret['data'] = { ...secret['data'], token: Buffer.from(token).toString('base64') };
    secret.metadata['resourceVersion'] = String(++this.resourceVersion);
    if (!fluxNotices) return;
    for (const receiver of this.receivers.values()) {
      if (receiver.metadata.namespace === namespace && receiver['spec']?.secretRef?.name === name) this.reconcileReceiver(receiver);
    }
  }

  setReceiverWebhookPath(namespace: string, name: string, webhookPath: string | undefined): void {
    const receiver = this.receivers.get(`${namespace}/${name}`);
    if (!receiver) throw new Error(`no Receiver ${namespace}/${name}`);
    receiver['status'] = webhookPath === undefined ? {} : { webhookPath };
  }

  /** The token stored in a Secret (decoded), for tests that play Flux. */
  secretToken(namespace: string, name: string): string | undefined {
    const encoded = this.secrets.get(`${namespace}/${name}`)?.['data']?.token;
    return encoded === undefined ? undefined : Buffer.from(encoded, 'base64').toString('utf8');
  }

  private emit(type: WatchEventType, object: Obj): void {
    const rv = Number(object.metadata.resourceVersion);
    this.history.push({ rv, type, object: structuredClone(object) });
    for (const w of this.watchers) {
      if (w.kind !== object.kind) continue;
      if (w.namespace === undefined || w.namespace === object.metadata.namespace) w.res.write(`${JSON.stringify({ type, object })}\n`);
    }
    for (const listener of this.listeners) listener(type, object);
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse, body: Buffer): Promise<void> {
    const url = new URL(req.url ?? '/', this.url);
    const path = url.pathname;
    if (req.headers.authorization !== `Bearer ${this.token}`) {
      this.unauthorized.push(path);
      return send(res, 401, status(401, 'Unauthorized'));
    }
    const attributes = attributesOf(req.method ?? 'GET', path, url.searchParams);
    if (attributes && !this.authorized(attributes)) return send(res, 403, status(403, `forbidden: ${JSON.stringify(attributes)}`));
    const proxy = /^\/api\/v1\/namespaces\/([^/]+)\/services\/([^/]+)\/proxy(\/.*)?$/.exec(path);
    if (proxy) return this.proxy(req, res, body, proxy[1] as string, proxy[2] as string, (proxy[3] ?? '/') + url.search);
    if (req.method === 'GET' && path === '/api/v1') {
      return send(res, 200, resourceList('v1', [['secrets', 'Secret'], ['services', 'Service']]));
    }
    if (req.method === 'GET') {
      // Discovery of a Flux group: the kinds whose CRD is installed; 404 when none is.
      const groupVersion = path.replace(/^\/apis\//, '');
      const kinds = KIND_NAMES.filter((k) => `${FLUX_KINDS[k].group}/${FLUX_KINDS[k].version}` === groupVersion);
      if (kinds.length > 0 && path.startsWith('/apis/')) {
        const resources = kinds.filter((k) => this.served(k)).map((k): [string, string] => [FLUX_KINDS[k].plural, k]);
        if (resources.length === 0) return send(res, 404, status(404, 'not found'));
        return send(res, 200, resourceList(groupVersion, resources));
      }
    }
    if (req.method === 'GET' && path === NOTIFICATION) {
      if (!this.crds.receivers) return send(res, 404, status(404, 'not found'));
      return send(res, 200, resourceList('notification.toolkit.fluxcd.io/v1', [['receivers', 'Receiver']]));
    }
    const routes = /^\/apis\/([^/]+)\/([^/]+)(?:\/namespaces\/([^/]+))?\/([^/]+)(?:\/([^/]+))?$/.exec(path);
    const sourceKind = routes
      ? KIND_NAMES.find((k) => FLUX_KINDS[k].group === routes[1] && FLUX_KINDS[k].version === routes[2] && FLUX_KINDS[k].plural === routes[4])
      : undefined;
    if (routes && sourceKind && this.served(sourceKind)) {
      const [, , , namespace, plural, name] = routes;
      const { group, version } = FLUX_KINDS[sourceKind];
      const map = this.sourcesOf(sourceKind);
      if (name !== undefined) {
        if (namespace === undefined) return send(res, 404, status(404, `no route for ${req.method} ${path}`));
        if (req.method === 'GET') {
          const found = map.get(`${namespace}/${name}`);
          return found ? send(res, 200, found) : send(res, 404, status(404, `${plural} "${name}" not found`));
        }
        if (req.method === 'PATCH') return this.patchSource(req, res, body, url, sourceKind, namespace, name);
        return send(res, 405, status(405, 'method not allowed'));
      }
      if (req.method !== 'GET') return send(res, 405, status(405, 'method not allowed'));
      const watch = url.searchParams.get('watch');
      if (watch === 'true' || watch === '1') return this.watch(res, sourceKind, namespace, Number(url.searchParams.get('resourceVersion') ?? 0));
      const items = [...map.values()].filter((o) => namespace === undefined || o.metadata.namespace === namespace);
      return send(res, 200, {
        apiVersion: `${group}/${version}`,
        kind: `${sourceKind}List`,
        metadata: { resourceVersion: String(this.resourceVersion) },
        items,
      });
    }
    const secret = /^\/api\/v1\/namespaces\/([^/]+)\/secrets\/([^/]+)$/.exec(path);
    if (secret) return this.object(req, res, body, url, this.secrets, 'Secret', secret[1] as string, secret[2] as string);
    const receiver = new RegExp(`^${NOTIFICATION}/namespaces/([^/]+)/receivers/([^/]+)$`).exec(path);
    if (receiver && this.crds.receivers) {
      return this.object(req, res, body, url, this.receivers, 'Receiver', receiver[1] as string, receiver[2] as string);
    }
    send(res, 404, status(404, `no route for ${req.method} ${path}`));
  }

  private served(kind: FluxObjectKind): boolean {
    return this.crds[FLUX_KINDS[kind].crd];
  }

  private watch(res: http.ServerResponse, kind: FluxObjectKind, namespace: string | undefined, after: number): void {
    res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
    res.flushHeaders(); // as the API server does: the client learns at once that the watch is open
    for (const event of this.history) {
      if (event.object.kind !== kind) continue;
      if (event.rv > after && (namespace === undefined || event.object.metadata.namespace === namespace)) {
        res.write(`${JSON.stringify({ type: event.type, object: event.object })}\n`);
      }
    }
    const watcher = { kind, namespace, res };
    this.watchers.add(watcher);
    res.on('close', () => this.watchers.delete(watcher));
  }

  /** PATCH of a Flux source: only JSON merge patch, as a real API server takes for a custom resource besides JSON Patch and apply. */
  private patchSource(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    body: Buffer,
    url: URL,
    kind: FluxObjectKind,
    namespace: string,
    name: string,
  ): void {
    const contentType = String(req.headers['content-type'] ?? '').split(';')[0]?.trim() ?? '';
    let patch: Record<string, any>;
    try {
      patch = JSON.parse(body.toString('utf8')) as Record<string, any>;
    } catch {
      return send(res, 400, status(400, 'the body of the request is not valid JSON'));
    }
    const record: SourcePatch = { kind, namespace, name, contentType, fieldManager: url.searchParams.get('fieldManager'), body: patch };
    this.sourcePatches.push(record);
    const injected = this.failSourcePatches.shift();
    if (injected === 'drop') {
      record.failed = 'dropped';
      req.socket.destroy();
      return;
    }
    if (injected !== undefined) {
      record.failed = injected;
      const message = injected === 409 ? `Operation cannot be fulfilled on ${kind.toLowerCase()}s "${name}": the object has been modified` : 'injected failure';
      return send(res, injected, status(injected, message));
    }
    if (contentType !== 'application/merge-patch+json') {
      record.failed = 415;
      return send(
        res,
        415,
        status(415, 'the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml'),
      );
    }
    const map = this.sourcesOf(kind);
    const existing = map.get(`${namespace}/${name}`);
    if (!existing) {
      record.failed = 404;
      return send(res, 404, status(404, `${FLUX_KINDS[kind].plural}.${FLUX_KINDS[kind].group} "${name}" not found`));
    }
    const merged = mergePatch(existing, patch) as Obj;
    merged.metadata = { ...merged.metadata, uid: existing.metadata.uid, name, namespace, resourceVersion: String(++this.resourceVersion) };
    map.set(`${namespace}/${name}`, merged);
    this.emit('MODIFIED', merged);
    send(res, 200, merged);
  }

  private object(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    body: Buffer,
    url: URL,
    map: Map<string, Obj>,
    kind: string,
    namespace: string,
    name: string,
  ): void {
    const key = `${namespace}/${name}`;
    if (req.method === 'GET') {
      const found = map.get(key);
      return found ? send(res, 200, found) : send(res, 404, status(404, `${kind.toLowerCase()}s "${name}" not found`));
    }
    if (req.method !== 'PATCH') return send(res, 405, status(405, 'method not allowed'));
    const contentType = String(req.headers['content-type'] ?? '');
    const fieldManager = url.searchParams.get('fieldManager');
    if (contentType !== 'application/apply-patch+yaml') return send(res, 415, status(415, 'this test server only takes apply patches'));
    if (!fieldManager) return send(res, 422, status(422, 'fieldManager is required for apply patch'));
    const applied = JSON.parse(body.toString('utf8')) as Obj; // YAML is a superset of JSON; client-node sends JSON.
    if (applied.kind !== kind || applied.metadata?.name !== name || applied.metadata?.namespace !== namespace) {
      return send(res, 400, status(400, 'body does not match the URL'));
    }
    const existing = map.get(key);
    // An apply that creates the object also needs the create verb, as in a real API server.
    const create = { apiGroup: kind === 'Secret' ? '' : 'notification.toolkit.fluxcd.io', resource: `${kind.toLowerCase()}s`, namespace, name, verb: 'create' };
    if (!existing && !this.authorized(create)) return send(res, 403, status(403, `forbidden: ${JSON.stringify(create)}`));
    this.applies.push({ kind, namespace, name, contentType, fieldManager, force: url.searchParams.get('force'), body: applied });
    const stored: Obj = {
      ...existing,
      ...applied,
      metadata: {
        ...existing?.metadata,
        ...applied.metadata,
        uid: existing?.metadata.uid ?? randomUUID(),
        resourceVersion: String(++this.resourceVersion),
        managedFields: [{ manager: fieldManager, operation: 'Apply' }],
      },
    };
    if (existing?.['status']) stored['status'] = existing['status'];
    map.set(key, stored);
    if (kind === 'Receiver' && this.fluxController) this.reconcileReceiver(stored);
    send(res, existing ? 200 : 201, stored);
  }

  private authorized(attributes: RequestAttributes): boolean {
    if (!this.rbac || allows(this.rbac, attributes)) return true;
    this.forbidden.push(attributes);
    return false;
  }

  /** What notification-controller does for a Receiver: webhook path from the token in its Secret. */
  private reconcileReceiver(receiver: Obj): void {
    const { name, namespace } = receiver.metadata;
    const token = this.secretToken(namespace, receiver['spec']?.secretRef?.name);
    if (token !== undefined) receiver['status'] = { webhookPath: fluxWebhookPath(token, name, namespace) };
  }

  private async proxy(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    body: Buffer,
    namespace: string,
    service: string,
    rest: string,
  ): Promise<void> {
    // `<svc>`, `<svc>:<port>` or `<scheme>:<svc>:<port>`, as the API server accepts.
    const parts = decodeURIComponent(service).split(':');
    const serviceName = (parts.length === 3 ? parts[1] : parts[0]) as string;
    const target = this.services.get(`${namespace}/${serviceName}`);
    if (!target) return send(res, 503, status(503, `no endpoints available for service "${serviceName}"`));
    this.proxied++;
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(req.headers)) {
      if (typeof v === 'string' && !['authorization', 'host', 'connection'].includes(k)) headers[k] = v;
    }
    const answer = await fetch(target + rest, { method: req.method ?? 'GET', headers, body: body.length > 0 ? body : undefined });
    res.writeHead(answer.status, { 'content-type': answer.headers.get('content-type') ?? 'text/plain' });
    res.end(Buffer.from(await answer.arrayBuffer()));
  }
}

/** RFC 7386 JSON merge patch: objects merge key by key, null removes, anything else replaces. */
export function mergePatch(target: unknown, patch: unknown): unknown {
  if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) return patch;
  const result: Record<string, unknown> =
    target !== null && typeof target === 'object' && !Array.isArray(target) ? { ...(target as Record<string, unknown>) } : {};
  for (const [key, value] of Object.entries(patch as Record<string, unknown>)) {
    if (value === null) delete result[key];
    else result[key] = mergePatch(result[key], value);
  }
  return result;
}

function resourceList(groupVersion: string, resources: [string, string][]) {
  return {
    kind: 'APIResourceList',
    apiVersion: 'v1',
    groupVersion,
    resources: resources.map(([plural, kind]) => ({
      name: plural,
      singularName: kind.toLowerCase(),
      namespaced: true,
      kind,
      verbs: ['create', 'delete', 'get', 'list', 'patch', 'update', 'watch'],
    })),
  };
}

function status(code: number, message: string) {
  return { kind: 'Status', apiVersion: 'v1', status: 'Failure', message, code };
}

function send(res: http.ServerResponse, code: number, body: unknown): void {
  res.writeHead(code, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}
