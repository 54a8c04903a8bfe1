/**
 * Which Flux objects an event deploys to, and how far each got: pure functions, no I/O.
 *
 * An event becomes a *trigger*; a trigger matches sources (GitRepository for pushes,
 * OCIRepository for artifacts); every Kustomization or HelmRelease whose sourceRef is a matched
 * source gets a deployment, which `advance` then moves as the agent reports status.
 *
 * Flux's formats, as its docs state them:
 * - GitRepository `spec.ref`: fields branch, tag, semver, name, commit, "with latter listed
 *   fields taking precedence over earlier ones. If not specified, it defaults to a `master`
 *   branch reference" (fluxcd/source-controller docs/spec/v1/gitrepositories.md, "Reference").
 * - An artifact revision is `<branch or tag>@sha1:<commit>`, e.g. `master@sha1:363a6a8f…`
 *   (same file, "Artifact"); before Flux 2.0 it was `<branch>/<commit>`; a commit-only ref gives
 *   `sha1:<commit>`. OCI artifacts: `<tag>@sha256:<digest>`, and the source commit in the
 *   artifact's `org.opencontainers.image.revision` metadata (ocirepositories.md).
 * - Kustomization `status.lastAppliedRevision` is "the last revision of the Artifact from the
 *   referred Source object that was successfully applied", `lastAttemptedRevision` the last one
 *   attempted; Ready is True with reason ReconciliationSucceeded once applied and healthy, False
 *   with PruneFailed | ArtifactFailed | BuildFailed | HealthCheckFailed | DependencyNotReady |
 *   ReconciliationFailed, and the controller keeps retrying (fluxcd/kustomize-controller
 *   docs/spec/v1/kustomizations.md, "Kustomization Status").
 * - A HelmChart built from Git with reconcileStrategy Revision has the version
 *   `<version>+<first 12 hex of the commit>[.<n>]` (fluxcd/source-controller CHANGELOG, 0.19.1).
 */
import semver from 'semver';
import type { ReportedObject } from '../protocol/kasgate-v1.js';

export const SOURCE_KINDS = new Set(['GitRepository', 'OCIRepository']);
export const WORKLOAD_KINDS = new Set(['Kustomization', 'HelmRelease']);

const BRANCH_PREFIX = 'refs/heads/';
const TAG_PREFIX = 'refs/tags/';
const ZERO_SHA = /^0+$/;

export type DeploymentState = 'pending' | 'fetched' | 'applied' | 'failed' | 'superseded' | 'timed_out';
export const FINAL_STATES: ReadonlySet<DeploymentState> = new Set(['applied', 'failed', 'superseded', 'timed_out']);

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

/** The commit a revision names: the full sha, or (a Helm chart version's metadata) a prefix of it. */
export function revisionCommit(revision: string | null | undefined): { sha: string; prefix: boolean } | undefined {
  if (!revision) return undefined;
  const text = revision.trim().toLowerCase();
  let match = /(?:^|@)sha1:([0-9a-f]{40})$/.exec(text);
  if (match) return { sha: match[1]!, prefix: false };
  match = /^(?:.+\/)?([0-9a-f]{40})$/.exec(text);
  if (match) return { sha: match[1]!, prefix: false };
  match = /\+([0-9a-f]{7,40})(?:\.\d+)?$/.exec(text);
  if (match) return { sha: match[1]!, prefix: true };
  return undefined;
}

export function revisionHasCommit(revision: string | null | undefined, sha: string | null | undefined): boolean {
  if (!sha) return false;
  const found = revisionCommit(revision);
  if (!found) return false;
  return found.prefix ? sha.toLowerCase().startsWith(found.sha) : found.sha === sha.toLowerCase();
}

/** `latest@sha256:<hex>` → `sha256:<hex>`. */
export function revisionDigest(revision: string | null | undefined): string | undefined {
  return /(sha256:[0-9a-f]{64})$/i.exec(revision ?? '')?.[1]?.toLowerCase();
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

/** Where a commit status goes, and for which commit. */
export interface CommitTarget {
  /** GitLab's :id (a numeric project id or a project path). */
  project: string;
  sha: string;
  /** The branch or tag name. */
  ref: string | null;
}

/** refs/heads/main → main, refs/tags/v1 → v1; other refs stay whole. */
export function shortRef(ref: string): string {
  if (ref.startsWith(BRANCH_PREFIX)) return ref.slice(BRANCH_PREFIX.length);
  if (ref.startsWith(TAG_PREFIX)) return ref.slice(TAG_PREFIX.length);
  return ref;
}

/**
 * The project path of a URL on this GitLab (`org.opencontainers.image.source`), or undefined when
 * it is on another host or not a project URL. `https://gitlab.example.com/group/app(.git)` → `group/app`.
 */
export function gitlabProjectOf(sourceUrl: string | null | undefined, gitlabUrl: string | undefined): string | undefined {
  if (!sourceUrl || !gitlabUrl) return undefined;
  let source: URL;
  let base: URL;
  try {
    source = new URL(sourceUrl.replace(/^git\+/, ''));
    base = new URL(gitlabUrl);
  } catch {
    return undefined;
  }
  if (source.hostname.toLowerCase() !== base.hostname.toLowerCase()) return undefined;
  const prefix = base.pathname.replace(/\/+$/, '');
  if (prefix && !source.pathname.startsWith(`${prefix}/`)) return undefined;
  const path = source.pathname
    .slice(prefix.length)
    .replace(/^\/+|\/+$/g, '')
    .replace(/\.git$/, '')
    // A link into the project (…/-/tree/main) is still the project.
    .split('/-/')[0]!;
  return path.split('/').filter(Boolean).length >= 2 ? path : undefined;
}

/** For an OCI source: the commit its artifact was built from, from the artifact's origin metadata. */
export function ociCommitOf(source: ReportedObject, gitlabUrl: string | undefined): CommitTarget | undefined {
  const commit = revisionCommit(source.originRevision);
  const project = gitlabProjectOf(source.originSource, gitlabUrl);
  if (!commit || commit.prefix || !project) return undefined;
  const ref = source.originRevision!.includes('@') ? source.originRevision!.slice(0, source.originRevision!.lastIndexOf('@')) : null;
  return { project, sha: commit.sha, ref: ref ? shortRef(ref) : null };
}

/** What `advance` needs of a deployment. */
export interface TrackedDeployment {
  state: DeploymentState;
  sourceType: 'git' | 'oci';
  /** The commit; for OCI known once the artifact is fetched. */
  sha: string | null;
  /** The source's revision when it became fetched. */
  fetchedRevision: string | null;
  trigger: Trigger;
}

export interface Step {
  state: DeploymentState;
  revision: string | null;
  /** Set with `fetched` for OCI: the commit the artifact says it was built from. */
  fetchedRevision?: string;
  reason?: string | null;
  message?: string | null;
}

/** Whether the source now holds the event's artifact. */
function sourceHasIt(d: TrackedDeployment, source: ReportedObject): boolean {
  const t = d.trigger;
  if (t.type === 'git') return revisionHasCommit(source.revision, t.sha);
  if (t.type === 'oci-pipeline') return revisionHasCommit(source.originRevision, t.sha);
  if (t.digest) return revisionDigest(source.revision) === t.digest.toLowerCase();
  return source.revision?.startsWith(`${t.tag}@`) ?? false;
}

/** Whether the workload's revision is the one this deployment brings. */
function isOurs(d: TrackedDeployment, revision: string | null, originRevision: string | null): boolean {
  if (d.sourceType === 'git') return revisionHasCommit(revision, d.sha);
  if (d.fetchedRevision !== null && revision === d.fetchedRevision) return true;
  return revisionHasCommit(originRevision, d.sha);
}

/**
 * The states a deployment moves through given the latest source and workload (either may be
 * unknown). Returns the steps in order, possibly none. `failed` is final for GitLab but not for
 * Flux, which retries: a failed deployment whose workload later reports Ready True at that
 * revision moves on to `applied`.
 */
export function advance(d: TrackedDeployment, source: ReportedObject | undefined, workload: ReportedObject | undefined): Step[] {
  if (d.state !== 'pending' && d.state !== 'fetched' && d.state !== 'failed') return [];
  const steps: Step[] = [];
  let current: TrackedDeployment = d;
  if (d.state === 'pending') {
    const workloadHasIt =
      d.sourceType === 'git' && workload !== undefined && (isOurs(d, workload.revision, null) || isOurs(d, workload.attemptedRevision, null));
    if (source && sourceHasIt(d, source)) {
      const fetchedRevision = source.revision ?? undefined;
      steps.push({ state: 'fetched', revision: source.revision, ...(fetchedRevision ? { fetchedRevision } : {}) });
      current = { ...d, state: 'fetched', fetchedRevision: fetchedRevision ?? null };
    } else if (workloadHasIt) {
      // The workload is already on it: the source was seen (or reported) late.
      steps.push({ state: 'fetched', revision: workload.attemptedRevision ?? workload.revision });
      current = { ...d, state: 'fetched' };
    } else {
      return steps;
    }
  }
  if (!workload || workload.suspended) return steps;
  if (workload.ready === 'True' && isOurs(current, workload.revision, workload.originRevision)) {
    steps.push({ state: 'applied', revision: workload.revision, reason: workload.reason, message: workload.message });
  } else if (
    current.state !== 'failed' &&
    workload.ready === 'False' &&
    isOurs(current, workload.attemptedRevision, null) &&
    !isOurs(current, workload.revision, workload.originRevision)
  ) {
    steps.push({ state: 'failed', revision: workload.attemptedRevision, reason: workload.reason, message: workload.message });
  }
  return steps;
}

/** The text of a commit status description: at most 255 characters, as GitLab allows. */
export function statusDescription(text: string): string {
  const oneLine = text.replace(/\s+/g, ' ').trim();
  return oneLine.length <= 255 ? oneLine : `${oneLine.slice(0, 254)}…`;
}
