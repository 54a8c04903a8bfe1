/**
 * The Flux objects that apply what a source fetched: Kustomizations (kustomize-controller) and
 * HelmReleases (helm-controller). The agent keeps every one it watches, with the source it takes
 * its artifact from, so that status reporting can say which of them stand on a managed source.
 *
 * Which source an object uses, as Flux resolves it:
 * - Kustomization `spec.sourceRef` {kind, name, namespace}: the namespace defaults to the
 *   Kustomization's (kustomize-controller docs/spec/v1/kustomizations.md, "Source reference" and
 *   "Cross-namespace references").
 * - HelmRelease `spec.chartRef` {kind: OCIRepository | HelmChart, name, namespace}, the namespace
 *   defaulting to the HelmRelease's (helm-controller api/v2/reference_types.go,
 *   CrossNamespaceSourceReference). An OCIRepository is the source itself. A HelmChart is a
 *   source of its own whose origin the agent cannot see (reading HelmCharts is not among its
 *   rights), so such a HelmRelease is not on a managed source.
 * - HelmRelease `spec.chart` (a template helm-controller turns into a source; docs/spec/v2/helmreleases.md
 *   "Chart template"): with `kind` HelmChart (the default), the HelmChart is built from
 *   `spec.chart.spec.sourceRef` (GitRepository, HelmRepository or Bucket; namespace defaulting
 *   to the HelmRelease's), so a HelmRelease whose chart comes from a GitRepository stands on that
 *   GitRepository; with `kind` OCIRepository, helm-controller creates the OCIRepository
 *   `<namespace>-<name>` in the HelmRelease's namespace, which the agent manages when its URL is
 *   on our registry.
 */
import type { KubernetesObject } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { z } from 'zod';
import { SOURCE_KINDS, sourceKey, type SourceKind } from './sources.js';

export const WORKLOAD_KINDS = ['Kustomization', 'HelmRelease'] as const;
export type WorkloadKind = (typeof WORKLOAD_KINDS)[number];

export interface SourceRef {
  kind: SourceKind;
  namespace: string;
  name: string;
}

export interface Workload {
  readonly kind: WorkloadKind;
  /** `<Kind>/<namespace>/<name>`. */
  readonly key: string;
  readonly namespace: string;
  readonly name: string;
  /** The GitRepository or OCIRepository it takes its artifact from; undefined for any other source. */
  readonly sourceRef: SourceRef | undefined;
  readonly suspended: boolean;
  /** The object as the watch last delivered it, status included. */
  readonly object: KubernetesObject;
}

export type WorkloadChange =
  | { type: 'upserted'; workload: Workload; previous: Workload | undefined }
  | { type: 'removed'; workload: Workload };

export type WorkloadListener = (change: WorkloadChange) => void;

const Metadata = z.object({ name: z.string().min(1), namespace: z.string().min(1) });

const Reference = z.object({ kind: z.string(), name: z.string().min(1), namespace: z.string().min(1).optional() });

const KustomizationShape = z.object({
  metadata: Metadata,
  spec: z.object({ sourceRef: Reference, suspend: z.boolean().optional() }),
});

const HelmReleaseShape = z.object({
  metadata: Metadata,
  spec: z.object({
    suspend: z.boolean().optional(),
    chartRef: Reference.optional(),
    chart: z
      .object({ kind: z.string().optional(), spec: z.object({ sourceRef: Reference.optional() }).optional() })
      .optional(),
  }),
});

const isSourceKind = (kind: string): kind is SourceKind => (SOURCE_KINDS as readonly string[]).includes(kind);

/** The managed-source kinds a reference can name, with Flux's namespace default. */
function reference(ref: z.infer<typeof Reference> | undefined, defaultNamespace: string): SourceRef | undefined {
  if (!ref || !isSourceKind(ref.kind)) return undefined;
  return { kind: ref.kind, namespace: ref.namespace ?? defaultNamespace, name: ref.name };
}

/** The source a Kustomization or HelmRelease takes its artifact from, when it is a GitRepository or an OCIRepository. */
export function workloadSourceRef(kind: WorkloadKind, object: KubernetesObject): SourceRef | undefined {
  if (kind === 'Kustomization') {
    const parsed = KustomizationShape.safeParse(object);
    return parsed.success ? reference(parsed.data.spec.sourceRef, parsed.data.metadata.namespace) : undefined;
  }
  const parsed = HelmReleaseShape.safeParse(object);
  if (!parsed.success) return undefined;
  const { metadata, spec } = parsed.data;
  if (spec.chartRef) return spec.chartRef.kind === 'OCIRepository' ? reference(spec.chartRef, metadata.namespace) : undefined;
  const template = spec.chart;
  if (!template) return undefined;
  if (template.kind === 'OCIRepository') {
    return { kind: 'OCIRepository', namespace: metadata.namespace, name: `${metadata.namespace}-${metadata.name}` };
  }
  if (template.kind !== undefined && template.kind !== 'HelmChart') return undefined;
  const sourceRef = template.spec?.sourceRef;
  return sourceRef?.kind === 'GitRepository' ? reference(sourceRef, metadata.namespace) : undefined;
}

export const workloadKey = (kind: WorkloadKind, namespace: string, name: string): string => `${kind}/${namespace}/${name}`;

export class WorkloadRegistry {
  private readonly workloads = new Map<string, Workload>();
  /** Source key → keys of the workloads on it. */
  private readonly bySource = new Map<string, Set<string>>();
  private readonly listeners = new Set<WorkloadListener>();

  constructor(private readonly logger: Logger) {}

  onChange(listener: WorkloadListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  get(key: string): Workload | undefined {
    return this.workloads.get(key);
  }

  all(): Workload[] {
    return [...this.workloads.values()];
  }

  /** The workloads whose source is `Kind/namespace/name`. */
  on(source: SourceRef): Workload[] {
    const keys = this.bySource.get(sourceKey(source.kind, source.namespace, source.name));
    return keys ? [...keys].map((key) => this.workloads.get(key) as Workload) : [];
  }

  upsert(kind: WorkloadKind, object: KubernetesObject): void {
    const { name, namespace } = object.metadata ?? {};
    if (!name || !namespace) return;
    const key = workloadKey(kind, namespace, name);
    const spec = (object as { spec?: { suspend?: unknown } }).spec;
    const workload: Workload = {
      kind,
      key,
      namespace,
      name,
      sourceRef: workloadSourceRef(kind, object),
      suspended: spec?.suspend === true,
      object,
    };
    const previous = this.workloads.get(key);
    if (previous) this.unindex(previous);
    this.workloads.set(key, workload);
    this.index(workload);
    this.emit({ type: 'upserted', workload, previous });
  }

  remove(kind: WorkloadKind, object: KubernetesObject): void {
    const { name, namespace } = object.metadata ?? {};
    if (!name || !namespace) return;
    const workload = this.workloads.get(workloadKey(kind, namespace, name));
    if (!workload) return;
    this.workloads.delete(workload.key);
    this.unindex(workload);
    this.emit({ type: 'removed', workload });
  }

  close(): void {
    this.listeners.clear();
    this.workloads.clear();
    this.bySource.clear();
  }

  private index(workload: Workload): void {
    if (!workload.sourceRef) return;
    const key = sourceKey(workload.sourceRef.kind, workload.sourceRef.namespace, workload.sourceRef.name);
    let keys = this.bySource.get(key);
    if (!keys) this.bySource.set(key, (keys = new Set()));
    keys.add(workload.key);
  }

  private unindex(workload: Workload): void {
    if (!workload.sourceRef) return;
    const key = sourceKey(workload.sourceRef.kind, workload.sourceRef.namespace, workload.sourceRef.name);
    const keys = this.bySource.get(key);
    keys?.delete(workload.key);
    if (keys?.size === 0) this.bySource.delete(key);
  }

  private emit(change: WorkloadChange): void {
    for (const listener of this.listeners) {
      try {
        listener(change);
      } catch (err) {
        this.logger.error({ err: err instanceof Error ? err.message : String(err), object: change.workload.key }, 'workload listener failed');
      }
    }
  }
}
