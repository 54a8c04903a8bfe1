/**
 * Flux controller stand-ins for the test API server: they move status as Flux's controllers do,
 * so that what the agent reports can be checked against real-looking transitions.
 *
 * - source-controller (docs/spec/v1/gitrepositories.md and ocirepositories.md, "Conditions"):
 *   a GitRepository or OCIRepository is reconciled when its generation is newer than
 *   `status.observedGeneration` or its `reconcile.fluxcd.io/requestedAt` annotation differs from
 *   `status.lastHandledReconcileAt` (what `flux reconcile`, the kasgate agent and a Receiver
 *   set). It fetches the revision the test put at the head of the ref (setGitHead, setOciTag):
 *   a new one goes `Reconciling=True/Progressing`, `Ready=Unknown/Progressing`,
 *   `ArtifactOutdated=True/NewRevision`, then `status.artifact` (revision `<ref>@sha1:<sha>` or
 *   `<tag>@<digest>`, with the OCI metadata), `Ready=True/Succeeded` "stored artifact for
 *   revision '…'", `ArtifactInStorage=True`. A ref with no head is `Ready=False`
 *   (GitOperationFailed / OCIArtifactPullFailed) with `FetchFailed=True`.
 * - kustomize-controller (docs/spec/v1/kustomizations.md, "Kustomization Status"): when its
 *   source's artifact revision changes (or on its own generation or reconcile request):
 *   `Reconciling=True/Progressing` and `Ready=Unknown`, then `lastAttemptedRevision`, and either
 *   `lastAppliedRevision` (+ `lastAppliedOriginRevision`) with `Ready=True/ReconciliationSucceeded`
 *   "Applied revision: …", or, when the test says the apply fails,
 *   `Ready=False/ReconciliationFailed` with the test's message.
 * - helm-controller (docs/spec/v2/helmreleases.md, "Conditions" and "History"): the same
 *   transitions, a new `status.history` snapshot per release (chart version `<version>+<first 12
 *   of the sha or digest>`, as with reconcileStrategy Revision), `Ready=True/UpgradeSucceeded`
 *   (InstallSucceeded the first time) or `Ready=False/UpgradeFailed`.
 * Each step takes `stepMs`. A suspended object is left alone, as Flux leaves it.
 */
import type { FakeKube, FluxObjectKind, Obj, SourceKind, WatchEventType } from './fake-kube.js';

export interface ControllerOptions {
  /** How long each controller step takes (default 20 ms). */
  stepMs?: number;
}

export interface OciArtifact {
  digest: string;
  /** `org.opencontainers.image.revision` (what `flux push artifact --revision` records). */
  revision?: string;
  /** `org.opencontainers.image.source`. */
  source?: string;
}

interface Condition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
  lastTransitionTime?: string;
  observedGeneration?: number;
}

const REQUESTED_AT = 'reconcile.fluxcd.io/requestedAt';
const SOURCE_KINDS: readonly string[] = ['GitRepository', 'OCIRepository'];

/** Kubernetes' metav1.Time: RFC 3339, whole seconds. */
const now = (): string => new Date().toISOString().replace(/\.\d+Z$/, 'Z');

export class FakeFluxControllers {
  private readonly stepMs: number;
  private readonly gitHeads = new Map<string, string>();
  private readonly ociTags = new Map<string, OciArtifact>();
  private readonly applyFailures = new Map<string, string>();
  private readonly busy = new Map<string, boolean>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private stopped = false;
  /** Every reconciliation finished, in order: `Kind/namespace/name@revision:Ready`. */
  readonly finished: string[] = [];

  constructor(
    private readonly kube: FakeKube,
    options: ControllerOptions,
  ) {
    this.stepMs = options.stepMs ?? 20;
    kube.listeners.add(this.onEvent);
  }

  /** The commit at the head of a branch or tag (`main`, `v1.2.0`, or a full `refs/...` name) of a project. */
  setGitHead(project: string, ref: string, sha: string): void {
    this.gitHeads.set(`${project.toLowerCase()}#${ref}`, sha);
  }

  /** The artifact a tag of a registry repository (`group/app/manifests`) points at. */
  setOciTag(repository: string, tag: string, artifact: OciArtifact): void {
    this.ociTags.set(`${repository.toLowerCase()}:${tag}`, artifact);
  }

  /** The next applies of a Kustomization or HelmRelease fail with this message (undefined: they succeed again). */
  failApply(kind: 'Kustomization' | 'HelmRelease', namespace: string, name: string, message: string | undefined): void {
    const key = `${kind}/${namespace}/${name}`;
    if (message === undefined) this.applyFailures.delete(key);
    else this.applyFailures.set(key, message);
  }

  stop(): void {
    this.stopped = true;
    this.kube.listeners.delete(this.onEvent);
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
  }

  private readonly onEvent = (type: WatchEventType, object: Obj): void => {
    if (type === 'DELETED' || this.stopped) return;
    const kind = object.kind as FluxObjectKind;
    if (object['spec']?.suspend === true || !this.requested(object)) return;
    this.schedule(kind, object.metadata.namespace, object.metadata.name);
  };

  /** Flux's trigger: a newer generation, or a reconcile request it has not handled yet. */
  private requested(object: Obj): boolean {
    const status = object['status'] ?? {};
    const requestedAt = object.metadata['annotations']?.[REQUESTED_AT];
    return object.metadata['generation'] !== status.observedGeneration || (requestedAt !== undefined && requestedAt !== status.lastHandledReconcileAt);
  }

  /** Runs one reconciliation of the object at a time; a trigger during one runs another after it. */
  private schedule(kind: FluxObjectKind, namespace: string, name: string): void {
    const key = `${kind}/${namespace}/${name}`;
    if (this.busy.has(key)) {
      this.busy.set(key, true);
      return;
    }
    this.busy.set(key, false);
    void (async () => {
      try {
        do {
          this.busy.set(key, false);
          if (SOURCE_KINDS.includes(kind)) await this.reconcileSource(kind as SourceKind, namespace, name);
          else await this.reconcileWorkload(kind as 'Kustomization' | 'HelmRelease', namespace, name);
        } while (this.busy.get(key) === true && !this.stopped);
      } finally {
        this.busy.delete(key);
      }
    })();
  }

  private step(): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.timers.delete(timer);
        resolve();
      }, this.stepMs);
      this.timers.add(timer);
    });
  }

  private async reconcileSource(kind: SourceKind, namespace: string, name: string): Promise<void> {
    await this.step();
    const object = this.kube.get(kind, namespace, name);
    if (!object || this.stopped) return;
    const handled = handledFields(object);
    const wanted = this.upstream(kind, object);
    const current = object['status']?.artifact?.revision as string | undefined;
    if (wanted === undefined) {
      const [reason, message] =
        kind === 'GitRepository'
          ? ['GitOperationFailed', `failed to checkout and determine revision: unable to clone '${object['spec'].url}': couldn't find remote ref "${gitRefName(object)}"`]
          : ['OCIArtifactPullFailed', `failed to determine artifact digest: couldn't find tag "${object['spec'].ref?.tag ?? 'latest'}"`];
      this.kube.setStatus(kind, namespace, name, (status) => ({
        ...status,
        ...handled,
        conditions: setConditions(status.conditions, handled.observedGeneration, [
          { type: 'Ready', status: 'False', reason, message },
          { type: 'FetchFailed', status: 'True', reason, message },
        ], ['Reconciling', 'ArtifactOutdated']),
      }));
      this.finished.push(`${kind}/${namespace}/${name}@${current ?? ''}:False`);
      return;
    }
    if (wanted.revision === current) {
      this.kube.setStatus(kind, namespace, name, (status) => ({ ...status, ...handled }));
      this.finished.push(`${kind}/${namespace}/${name}@${current}:${readyOf(object)}`);
      return;
    }
    const progressing = `building artifact: new upstream revision '${wanted.revision}'`;
    this.kube.setStatus(kind, namespace, name, (status) => ({
      ...status,
      conditions: setConditions(status.conditions, object.metadata['generation'], [
        { type: 'Reconciling', status: 'True', reason: 'Progressing', message: progressing },
        { type: 'Ready', status: 'Unknown', reason: 'Progressing', message: progressing },
        { type: 'ArtifactOutdated', status: 'True', reason: 'NewRevision', message: `new upstream revision '${wanted.revision}'` },
      ]),
    }));
    await this.step();
    if (this.stopped || !this.kube.get(kind, namespace, name)) return;
    const stored = `stored artifact for revision '${wanted.revision}'`;
    this.kube.setStatus(kind, namespace, name, (status) => ({
      ...status,
      ...handled,
      artifact: {
        revision: wanted.revision,
        digest: `sha256:${'0'.repeat(64)}`,
        lastUpdateTime: now(),
        path: `${kind.toLowerCase()}/${namespace}/${name}/artifact.tar.gz`,
        url: `http://source-controller.flux-system.svc.cluster.local./${kind.toLowerCase()}/${namespace}/${name}/artifact.tar.gz`,
        size: 1024,
        ...(wanted.metadata ? { metadata: wanted.metadata } : {}),
      },
      conditions: setConditions(status.conditions, handled.observedGeneration, [
        { type: 'Ready', status: 'True', reason: 'Succeeded', message: stored },
        { type: 'ArtifactInStorage', status: 'True', reason: 'Succeeded', message: stored },
      ], ['Reconciling', 'ArtifactOutdated', 'FetchFailed']),
    }));
    this.finished.push(`${kind}/${namespace}/${name}@${wanted.revision}:True`);
    // kustomize- and helm-controller watch their sources for a new artifact.
    for (const workload of this.workloadsOn(kind, namespace, name)) {
      this.schedule(workload.kind as FluxObjectKind, workload.metadata.namespace, workload.metadata.name);
    }
  }

  private upstream(kind: SourceKind, object: Obj): { revision: string; metadata?: Record<string, string> } | undefined {
    const url = String(object['spec'].url);
    if (kind === 'GitRepository') {
      const project = new URL(url).pathname.replace(/^\/+/, '').replace(/\.git$/i, '').toLowerCase();
      const ref = gitRefName(object);
      const sha = this.gitHeads.get(`${project}#${ref}`) ?? this.gitHeads.get(`${project}#${ref.replace(/^refs\/(heads|tags)\//, '')}`);
      return sha === undefined ? undefined : { revision: `${ref}@sha1:${sha}` };
    }
    const repository = url.replace(/^oci:\/\/[^/]+\//i, '').toLowerCase();
    const tag = object['spec'].ref?.tag ?? 'latest';
    const artifact = this.ociTags.get(`${repository}:${tag}`);
    if (!artifact) return undefined;
    const metadata: Record<string, string> = { 'org.opencontainers.image.created': now() };
    if (artifact.revision) metadata['org.opencontainers.image.revision'] = artifact.revision;
    if (artifact.source) metadata['org.opencontainers.image.source'] = artifact.source;
    return { revision: `${tag}@${artifact.digest}`, metadata };
  }

  /** The Kustomizations and HelmReleases whose source is this one (Flux's references, with their namespace defaults). */
  private workloadsOn(kind: SourceKind, namespace: string, name: string): Obj[] {
    const on = (object: Obj): boolean => {
      const ref = workloadSource(object);
      return ref !== undefined && ref.kind === kind && ref.namespace === namespace && ref.name === name;
    };
    return [...this.kube.kustomizations.values(), ...this.kube.helmReleases.values()].filter(on);
  }

  private async reconcileWorkload(kind: 'Kustomization' | 'HelmRelease', namespace: string, name: string): Promise<void> {
    await this.step();
    const object = this.kube.get(kind, namespace, name);
    if (!object || this.stopped || object['spec']?.suspend === true) return;
    const handled = handledFields(object);
    const ref = workloadSource(object);
    const source = ref ? this.kube.get(ref.kind, ref.namespace, ref.name) : undefined;
    const artifact = source?.['status']?.artifact as { revision: string; metadata?: Record<string, string> } | undefined;
    if (!artifact) {
      const message = ref ? `Source artifact not found, retrying in 30s` : 'no source reference';
      this.kube.setStatus(kind, namespace, name, (status) => ({
        ...status,
        ...handled,
        conditions: setConditions(status.conditions, handled.observedGeneration, [{ type: 'Ready', status: 'False', reason: 'ArtifactFailed', message }]),
      }));
      this.finished.push(`${kind}/${namespace}/${name}@:False`);
      return;
    }
    const revision = kind === 'Kustomization' ? artifact.revision : chartRevision(object, artifact.revision);
    if (revision === object['status']?.lastAttemptedRevision && !this.requested(object)) return;
    const progressing = kind === 'Kustomization' ? `Fetching manifests for revision ${revision} with a timeout of 4m30s` : `Running 'upgrade' action with timeout of 5m0s`;
    this.kube.setStatus(kind, namespace, name, (status) => ({
      ...status,
      conditions: setConditions(status.conditions, object.metadata['generation'], [
        { type: 'Reconciling', status: 'True', reason: 'Progressing', message: progressing },
        { type: 'Ready', status: 'Unknown', reason: 'Progressing', message: 'Reconciliation in progress' },
      ]),
    }));
    await this.step();
    if (this.stopped || !this.kube.get(kind, namespace, name)) return;
    const failure = this.applyFailures.get(`${kind}/${namespace}/${name}`);
    if (kind === 'Kustomization') this.finishKustomization(object, handled, revision, artifact, failure);
    else this.finishHelmRelease(object, handled, revision, failure);
    this.finished.push(`${kind}/${namespace}/${name}@${revision}:${failure === undefined ? 'True' : 'False'}`);
  }

  private finishKustomization(
    object: Obj,
    handled: ReturnType<typeof handledFields>,
    revision: string,
    artifact: { metadata?: Record<string, string> },
    failure: string | undefined,
  ): void {
    const { namespace, name } = object.metadata;
    this.kube.setStatus('Kustomization', namespace, name, (status) => {
      const next: Record<string, any> = { ...status, ...handled, lastAttemptedRevision: revision };
      if (failure !== undefined) {
        next['conditions'] = setConditions(status.conditions, handled.observedGeneration, [
          { type: 'Reconciling', status: 'True', reason: 'ProgressingWithRetry', message: failure },
          { type: 'Ready', status: 'False', reason: 'ReconciliationFailed', message: failure },
        ]);
        return next;
      }
      next['lastAppliedRevision'] = revision;
      const origin = artifact.metadata?.['org.opencontainers.image.revision'];
      if (origin) next['lastAppliedOriginRevision'] = origin;
      else delete next['lastAppliedOriginRevision'];
      next['conditions'] = setConditions(status.conditions, handled.observedGeneration, [
        { type: 'Ready', status: 'True', reason: 'ReconciliationSucceeded', message: `Applied revision: ${revision}` },
      ], ['Reconciling']);
      return next;
    });
  }

  private finishHelmRelease(object: Obj, handled: ReturnType<typeof handledFields>, chartVersion: string, failure: string | undefined): void {
    const { namespace, name } = object.metadata;
    this.kube.setStatus('HelmRelease', namespace, name, (status) => {
      const history: Record<string, any>[] = status.history ?? [];
      const version = (history[0]?.['version'] ?? 0) + 1;
      const install = history.length === 0;
      const chartName = object['spec'].chart?.spec?.chart ?? name;
      const release = `${namespace}/${name}.v${version}`;
      const snapshot = {
        name,
        namespace,
        version,
        status: failure === undefined ? 'deployed' : 'failed',
        chartName,
        chartVersion,
        digest: `sha256:${'1'.repeat(64)}`,
        configDigest: `sha256:${'2'.repeat(64)}`,
        firstDeployed: history.at(-1)?.['firstDeployed'] ?? now(),
        lastDeployed: now(),
      };
      const older = failure === undefined ? history.map((h) => (h['status'] === 'deployed' ? { ...h, status: 'superseded' } : h)) : history;
      const action = install ? 'install' : 'upgrade';
      const reason = failure === undefined ? (install ? 'InstallSucceeded' : 'UpgradeSucceeded') : install ? 'InstallFailed' : 'UpgradeFailed';
      const message =
        failure === undefined
          ? `Helm ${action} succeeded for release ${release} with chart ${chartName}@${chartVersion}`
          : `Helm ${action} failed for release ${release} with chart ${chartName}@${chartVersion}: ${failure}`;
      return {
        ...status,
        ...handled,
        lastAttemptedRevision: chartVersion,
        lastAttemptedReleaseAction: action,
        history: [snapshot, ...older].slice(0, 5),
        conditions: setConditions(status.conditions, handled.observedGeneration, [
          { type: 'Ready', status: failure === undefined ? 'True' : 'False', reason, message },
          { type: 'Released', status: failure === undefined ? 'True' : 'False', reason, message },
        ], failure === undefined ? ['Reconciling'] : []),
      };
    });
  }
}

/** What a controller records once it has handled the object's generation and reconcile request. */
function handledFields(object: Obj): { observedGeneration: number; lastHandledReconcileAt?: string } {
  const requestedAt = object.metadata['annotations']?.[REQUESTED_AT] as string | undefined;
  return { observedGeneration: object.metadata['generation'] ?? 1, ...(requestedAt ? { lastHandledReconcileAt: requestedAt } : {}) };
}

function readyOf(object: Obj): string {
  return (object['status']?.conditions ?? []).find((c: Condition) => c.type === 'Ready')?.status ?? 'Unknown';
}

/** The ref a GitRepository fetches (Flux: name > tag > branch; `master` without a ref). */
function gitRefName(object: Obj): string {
  const ref = object['spec'].ref ?? {};
  return ref.name ?? ref.tag ?? ref.branch ?? 'master';
}

/** A HelmRelease's chart version for an artifact: `<version>+<first 12 of the sha or digest>`. */
function chartRevision(object: Obj, artifactRevision: string): string {
  const version = /^\d+\.\d+\.\d+$/.test(object['spec'].chart?.spec?.version ?? '') ? object['spec'].chart.spec.version : '1.0.0';
  const hash = artifactRevision.split(':').at(-1) ?? '';
  return `${version}+${hash.slice(0, 12)}`;
}

/** The source of a Kustomization or HelmRelease, as kustomize- and helm-controller resolve it. */
function workloadSource(object: Obj): { kind: SourceKind; namespace: string; name: string } | undefined {
  const { namespace, name } = object.metadata;
  const spec = object['spec'] ?? {};
  const pick = (ref: { kind?: string; name?: string; namespace?: string } | undefined) =>
    ref && (ref.kind === 'GitRepository' || ref.kind === 'OCIRepository') && ref.name
      ? { kind: ref.kind as SourceKind, namespace: ref.namespace ?? namespace, name: ref.name }
      : undefined;
  if (object.kind === 'Kustomization') return pick(spec.sourceRef);
  if (spec.chartRef) return pick(spec.chartRef);
  if (spec.chart?.kind === 'OCIRepository') return { kind: 'OCIRepository', namespace, name: `${namespace}-${name}` };
  return pick(spec.chart?.spec?.sourceRef);
}

/**
 * Conditions as Flux's `conditions.Set` keeps them: one per type, `lastTransitionTime` moved only
 * when the status changes, `removed` types dropped (the negative-polarity ones once resolved).
 */
function setConditions(existing: Condition[] | undefined, generation: number | undefined, updates: Condition[], removed: string[] = []): Condition[] {
  const conditions = (existing ?? []).filter((c) => !removed.includes(c.type));
  for (const update of updates) {
    const index = conditions.findIndex((c) => c.type === update.type);
    const previous = index >= 0 ? conditions[index] : undefined;
    const next: Condition = {
      ...update,
      observedGeneration: generation ?? 1,
      lastTransitionTime: previous && previous.status === update.status ? previous.lastTransitionTime ?? now() : now(),
    };
    if (index >= 0) conditions[index] = next;
    else conditions.push(next);
  }
  return conditions;
}
