/**
 * Which Flux objects an event deploys to: pure functions, no I/O. An event becomes a *trigger*;
 * a trigger matches sources (GitRepository for pushes, OCIRepository for artifacts); every
 * Kustomization or HelmRelease whose sourceRef is a matched source gets a deployment, which
 * progress.ts then moves as the agent reports status (commit-target.ts: where its statuses go).
 *
 * GitRepository `spec.ref` has fields branch, tag, semver, name, commit, "with latter listed
 * fields taking precedence over earlier ones. If not specified, it defaults to a `master` branch
 * reference" (fluxcd/source-controller docs/spec/v1/gitrepositories.md, "Reference"). An OCI
 * artifact names the commit it was built from in its `org.opencontainers.image.revision` metadata
 * (ocirepositories.md).
 */
import semver from 'semver';
import type { ReportedObject } from '../protocol/kasgate-v1.js';
import { revisionCommit, revisionDigest } from './revisions.js';

export const SOURCE_KINDS = new Set(['GitRepository', 'OCIRepository']);
export const WORKLOAD_KINDS = new Set(['Kustomization', 'HelmRelease']);

export const BRANCH_PREFIX = 'refs/heads/';
export const TAG_PREFIX = 'refs/tags/';
const ZERO_SHA = /^0+$/;

/** What an event asks of the cluster. */
export type Trigger =
  /** A push or tag push: GitRepositories of the project whose ref it moves. */
  | { type: 'git'; projectPath: string; ref: string; sha: string }
  /** A pipeline that succeeded (it may have pushed an artifact): OCIRepositories under the project. */
  | { type: 'oci-pipeline'; projectPath: string; ref: string; sha: string }
  /** A tag pushed to the registry: OCIRepositories of exactly that repository whose ref the tag can move. */
  | { type: 'oci-registry'; projectPath: string; repository: string; tag: string; digest: string | null };

/** The event fields a trigger is made of (a StoredEvent, or an artifact event once ingest stores them). */
export type TriggerInput =
  | { kind: 'push' | 'tag_push'; projectPath: string; ref: string; after: string; checkoutSha: string | null }
  | { kind: 'artifact'; source: 'pipeline'; projectPath: string; ref: string; sha: string }
  | { kind: 'artifact'; source: 'registry'; projectPath: string; repository: string; tag: string; digest: string | null };

/**
 * The trigger of an event; undefined when it deploys nothing (a branch or tag deleted).
 * The commit is checkout_sha when the push has one (a tag push's `after` may be the tag object), else `after`.
 */
export function triggerOf(event: TriggerInput): Trigger | undefined {
  if (event.kind === 'artifact') {
    if (event.source === 'pipeline') return { type: 'oci-pipeline', projectPath: event.projectPath, ref: event.ref, sha: event.sha.toLowerCase() };
    return { type: 'oci-registry', projectPath: event.projectPath, repository: event.repository, tag: event.tag, digest: event.digest };
  }
  const sha = (event.checkoutSha || event.after).toLowerCase();
  if (ZERO_SHA.test(sha)) return undefined;
  return { type: 'git', projectPath: event.projectPath, ref: event.ref, sha };
}

/** A Masterminds-style range ("~1.2", ">= 1.0, < 2.0") as npm semver reads it; undefined when it cannot. */
function semverRange(range: string): semver.Range | undefined {
  try {
    return new semver.Range(range.replaceAll(',', ' '), { loose: true });
  } catch {
    return undefined;
  }
}

/** A tag as a version, as Flux reads tags for semver refs (`v1.2.3`, `1.2`); undefined for other tags. */
function tagVersion(tag: string): string | undefined {
  const exact = semver.valid(tag, { loose: true });
  if (exact) return exact;
  return /^v?\d+(\.\d+)?$/.test(tag) ? semver.coerce(tag)?.version : undefined;
}

/** Whether a tag falls in a semver range. Flux skips tags that are not versions; an unreadable range counts as in. */
function tagInRange(tag: string, range: string): boolean {
  const version = tagVersion(tag);
  if (!version) return false;
  const parsed = semverRange(range);
  return parsed ? parsed.test(version) : true;
}

/**
 * Whether a push to `pushedRef` of commit `sha` is what a GitRepository with `ref` will fetch.
 * The precedence is Flux's: commit > name > semver > tag > branch; no ref is the `master` branch.
 * A pinned commit fetches only itself; a semver range only tags within it.
 */
export function gitRefTakes(ref: Record<string, string> | null, pushedRef: string, sha: string): boolean {
  const given = (key: string): string | undefined => (ref?.[key] ? ref[key] : undefined);
  const commit = given('commit');
  if (commit !== undefined) {
    const branch = given('branch');
    return sha.startsWith(commit.toLowerCase()) && (branch === undefined || pushedRef === BRANCH_PREFIX + branch);
  }
  const name = given('name');
  if (name !== undefined) return pushedRef === name;
  const range = given('semver');
  if (range !== undefined) {
    return pushedRef.startsWith(TAG_PREFIX) && pushedRef.length > TAG_PREFIX.length && tagInRange(pushedRef.slice(TAG_PREFIX.length), range);
  }
  const tag = given('tag');
  if (tag !== undefined) return pushedRef === TAG_PREFIX + tag;
  return pushedRef === BRANCH_PREFIX + (given('branch') ?? 'master');
}

/** Whether a registry tag push can change what an OCIRepository with `ref` fetches: tag equal, semver in range, no ref = `latest`, digest never. */
export function ociRefTakes(ref: Record<string, string> | null, tag: string): boolean {
  if (ref?.digest) return false;
  if (ref?.semver) return tagInRange(tag, ref.semver);
  return tag === (ref?.tag || 'latest');
}

/** `oci://host/group/app/image` → `group/app/image`; undefined for anything else. */
export function ociRepository(url: string | null): string | undefined {
  const match = /^oci:\/\/[^/]+\/(.+?)\/*$/.exec(url ?? '');
  return match?.[1];
}

const samePath = (a: string | null | undefined, b: string) => typeof a === 'string' && a.toLowerCase() === b.toLowerCase();

/** Whether a source object is one the trigger deploys through. */
export function sourceTakes(trigger: Trigger, source: ReportedObject): boolean {
  if (trigger.type === 'git') {
    return source.kind === 'GitRepository' && samePath(source.project, trigger.projectPath) && gitRefTakes(source.ref, trigger.ref, trigger.sha);
  }
  if (source.kind !== 'OCIRepository') return false;
  const repository = ociRepository(source.url)?.toLowerCase();
  if (repository === undefined) return false;
  if (trigger.type === 'oci-pipeline') {
    const project = trigger.projectPath.toLowerCase();
    return repository === project || repository.startsWith(`${project}/`);
  }
  return repository === trigger.repository.toLowerCase() && ociRefTakes(source.ref, trigger.tag);
}

export const objectKey = (o: { kind: string; namespace: string; name: string }) => `${o.kind}/${o.namespace}/${o.name}`;

export function sourceKeyOf(workload: ReportedObject): string | undefined {
  const ref = workload.sourceRef;
  return ref ? objectKey(ref) : undefined;
}

/**
 * Whether kasgate can tell which commit a workload applied. A Kustomization always says (its
 * revisions are its source's); a HelmRelease only when its revisions carry a commit or a digest
 * (a chart built with reconcileStrategy Revision, an OCI chart), as Flux's own commit-status
 * notifications need. One whose chart version alone moves is not followed: it would time out.
 */
export function canFollow(workload: ReportedObject): boolean {
  if (workload.kind === 'Kustomization') return true;
  const revisions = [workload.revision, workload.attemptedRevision].filter((r): r is string => !!r);
  return revisions.every((r) => revisionCommit(r) !== undefined || revisionDigest(r) !== undefined);
}

/** A source and the workloads on it that a trigger deploys to. */
export interface Affected {
  source: ReportedObject;
  workload: ReportedObject;
}

/** Every followable workload whose source the trigger matches. */
export function affectedBy(trigger: Trigger, objects: Iterable<ReportedObject>): Affected[] {
  const sources = new Map<string, ReportedObject>();
  const workloads: ReportedObject[] = [];
  for (const o of objects) {
    if (SOURCE_KINDS.has(o.kind)) {
      if (sourceTakes(trigger, o)) sources.set(objectKey(o), o);
    } else if (WORKLOAD_KINDS.has(o.kind)) workloads.push(o);
  }
  const affected: Affected[] = [];
  for (const workload of workloads) {
    const source = sources.get(sourceKeyOf(workload) ?? '');
    if (source && canFollow(workload)) affected.push({ source, workload });
  }
  return affected;
}

