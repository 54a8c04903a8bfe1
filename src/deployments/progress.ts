/**
 * How far a deployment got, from what the agent reports: `advance` moves it pending → fetched →
 * applied | failed. Kustomization `status.lastAppliedRevision` is "the last revision of the
 * Artifact from the referred Source object that was successfully applied", `lastAttemptedRevision`
 * the last one attempted; Ready is True with reason ReconciliationSucceeded once applied and
 * healthy, False with PruneFailed | ArtifactFailed | BuildFailed | HealthCheckFailed |
 * DependencyNotReady | ReconciliationFailed, and the controller keeps retrying
 * (fluxcd/kustomize-controller docs/spec/v1/kustomizations.md, "Kustomization Status").
 */
import type { ReportedObject } from '../protocol/kasgate-v1.js';
import type { Trigger } from './matching.js';
import { revisionDigest, revisionHasCommit } from './revisions.js';

export type DeploymentState = 'pending' | 'fetched' | 'applied' | 'failed' | 'superseded' | 'timed_out';
export const FINAL_STATES: ReadonlySet<DeploymentState> = new Set(['applied', 'failed', 'superseded', 'timed_out']);

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
