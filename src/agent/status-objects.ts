/**
 * Flux objects → the OBJECTs of `status` frames (DESIGN.md "Cluster state"; the schema is
 * ReportedObject in src/protocol/kasgate-v1.ts). Pure functions: what a frame says about one
 * GitRepository, OCIRepository, Kustomization or HelmRelease, texts cut to the schema's limits.
 *
 * What Flux's status carries, and where it goes:
 * - every kind: the `Ready` condition (kstatus; absent → `Unknown`) gives `ready`, `reason`,
 *   `message` and `updatedAt` (its lastTransitionTime); `spec.suspend` gives `suspended`;
 * - sources (source-controller docs/spec/v1/gitrepositories.md and ocirepositories.md,
 *   "Artifact"): `revision` = `status.artifact.revision` (`main@sha1:<sha>`,
 *   `v1@sha256:<digest>`), `originRevision` and `originSource` = the artifact metadata
 *   `org.opencontainers.image.revision` and `.source` (what `flux push artifact` records), `url` =
 *   `spec.url`, `ref` = `spec.ref`, and `project` = the GitLab project path of a GitRepository,
 *   or the registry repository path of an OCIRepository (`group/app/manifests`: the gateway knows
 *   which prefix is the project);
 * - Kustomizations (kustomize-controller docs/spec/v1/kustomizations.md, "Kustomization Status"):
 *   `revision` = `status.lastAppliedRevision`, `attemptedRevision` =
 *   `status.lastAttemptedRevision`, `originRevision` = `status.lastAppliedOriginRevision`;
 * - HelmReleases (helm-controller api/v2/helmrelease_types.go and snapshot_types.go):
 *   `revision` = the chart version of the newest `status.history` snapshot that is `deployed`
 *   (the release running now; the deprecated `status.lastAppliedRevision` when there is no
 *   history), `attemptedRevision` = `status.lastAttemptedRevision` (for an OCIRepository chart,
 *   `<version>+<digest prefix>`).
 */
import type { z } from 'zod';
import { ReportedObject } from '../protocol/kasgate-v1.js';
import type { ManagedSource } from './sources.js';
import type { Workload } from './workloads.js';

export type ReportedObjectInput = z.input<typeof ReportedObject>;

const OCI_REVISION = 'org.opencontainers.image.revision';
const OCI_SOURCE = 'org.opencontainers.image.source';

type TextField = 'reason' | 'message' | 'revision' | 'originRevision' | 'originSource' | 'attemptedRevision' | 'url' | 'project' | 'updatedAt';

const shape = ReportedObject.shape;
/** The schema's limits, read from it so that they stay in step. */
const MAX: Record<TextField | 'ref', number> = {
  reason: shape.reason.unwrap().unwrap().maxLength ?? 256,
  message: shape.message.unwrap().unwrap().maxLength ?? 4096,
  revision: shape.revision.unwrap().unwrap().maxLength ?? 1024,
  originRevision: shape.originRevision.unwrap().unwrap().maxLength ?? 1024,
  originSource: shape.originSource.unwrap().unwrap().maxLength ?? 2048,
  attemptedRevision: shape.attemptedRevision.unwrap().unwrap().maxLength ?? 1024,
  url: shape.url.unwrap().unwrap().maxLength ?? 2048,
  project: shape.project.unwrap().unwrap().maxLength ?? 1024,
  updatedAt: shape.updatedAt.unwrap().unwrap().maxLength ?? 64,
  ref: shape.ref.unwrap().unwrap().valueType.maxLength ?? 1024,
};

/** `text` cut to at most `max` UTF-16 units (what zod counts), ending in `…` when cut; never half a surrogate pair. */
export function cutText(text: string, max: number): string {
  if (text.length <= max) return text;
  if (max <= 0) return '';
  let head = text.slice(0, max - 1);
  const last = head.charCodeAt(head.length - 1);
  if (last >= 0xd800 && last <= 0xdbff) head = head.slice(0, -1);
  return `${head}…`;
}

const str = (value: unknown, field: TextField): string | undefined =>
  typeof value === 'string' && value !== '' ? cutText(value, MAX[field]) : undefined;

const record = (value: unknown): Record<string, unknown> | undefined =>
  value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;

export interface ReadyState {
  ready: 'True' | 'False' | 'Unknown';
  reason?: string | undefined;
  message?: string | undefined;
  updatedAt?: string | undefined;
}

/** The `Ready` condition of a Flux object (`Unknown`, with nothing else, when it has none yet). */
export function readyState(object: unknown): ReadyState {
  const conditions = record(record(object)?.['status'])?.['conditions'];
  const ready = Array.isArray(conditions) ? conditions.map(record).find((c) => c?.['type'] === 'Ready') : undefined;
  if (!ready) return { ready: 'Unknown' };
  const status = ready['status'];
  return {
    ready: status === 'True' || status === 'False' ? status : 'Unknown',
    reason: str(ready['reason'], 'reason'),
    message: str(ready['message'], 'message'),
    updatedAt: str(ready['lastTransitionTime'], 'updatedAt'),
  };
}

/** `spec.ref` with its string fields, as Flux has it; null when there is none. */
function refOf(ref: Record<string, unknown> | undefined): Record<string, string> | null {
  if (!ref) return null;
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(ref)) if (typeof value === 'string') out[key] = cutText(value, MAX.ref);
  return out;
}

export function reportSource(source: ManagedSource): ReportedObjectInput {
  const status = record(record(source.object)?.['status']);
  const artifact = record(status?.['artifact']);
  const metadata = record(artifact?.['metadata']);
  return compact({
    kind: source.kind,
    namespace: source.namespace,
    name: source.name,
    ...readyState(source.object),
    revision: str(artifact?.['revision'], 'revision'),
    originRevision: str(metadata?.[OCI_REVISION], 'originRevision'),
    originSource: str(metadata?.[OCI_SOURCE], 'originSource'),
    url: str(source.url, 'url'),
    project: str(source.kind === 'GitRepository' ? source.project : source.repository, 'project'),
    ref: refOf(source.ref as Record<string, unknown> | undefined),
    suspended: source.suspended,
  });
}

export function reportWorkload(workload: Workload): ReportedObjectInput {
  const status = record(record(workload.object)?.['status']);
  const revisions =
    workload.kind === 'Kustomization'
      ? {
          revision: str(status?.['lastAppliedRevision'], 'revision'),
          originRevision: str(status?.['lastAppliedOriginRevision'], 'originRevision'),
          attemptedRevision: str(status?.['lastAttemptedRevision'], 'attemptedRevision'),
        }
      : {
          revision: str(deployedChartVersion(status?.['history']) ?? status?.['lastAppliedRevision'], 'revision'),
          attemptedRevision: str(status?.['lastAttemptedRevision'], 'attemptedRevision'),
        };
  return compact({
    kind: workload.kind,
    namespace: workload.namespace,
    name: workload.name,
    ...readyState(workload.object),
    ...revisions,
    sourceRef: workload.sourceRef ?? null,
    suspended: workload.suspended,
  });
}

/** The chart version of the newest snapshot (highest release version) whose release is deployed. */
function deployedChartVersion(history: unknown): string | undefined {
  if (!Array.isArray(history)) return undefined;
  let best: { version: number; chartVersion: string } | undefined;
  for (const entry of history.map(record)) {
    const version = entry?.['version'];
    const chartVersion = entry?.['chartVersion'];
    if (entry?.['status'] !== 'deployed' || typeof version !== 'number' || typeof chartVersion !== 'string') continue;
    if (!best || version > best.version) best = { version, chartVersion };
  }
  return best?.chartVersion;
}

/** Leaves out what is absent: the schema reads a missing field as null, and frames stay small. */
function compact<T extends Record<string, unknown>>(object: T): T {
  for (const key of Object.keys(object)) if (object[key] === undefined || object[key] === null) delete object[key];
  return object;
}

/** The object if the gateway will take it (names are Kubernetes names, kinds known); otherwise why not. */
export function checkReported(object: ReportedObjectInput): { ok: true } | { ok: false; problem: string } {
  const result = ReportedObject.safeParse(object);
  if (result.success) return { ok: true };
  const issue = result.error.issues[0];
  return { ok: false, problem: `${issue?.path.join('.') || 'object'}: ${issue?.message ?? 'invalid'}` };
}
