/**
 * The events of the log, whatever brought them: pushes (project, group and system hooks) and
 * artifacts (a pipeline that succeeded, a tag pushed to the container registry). One log, one
 * id sequence, one access rule: every event belongs to a GitLab project.
 */

/** The project an event belongs to, as that event saw it. */
export interface ProjectFields {
  projectId: number;
  projectPath: string;
  /** GitLab visibility_level at the time of the event; null when unknown (fails closed). */
  visibility: number | null;
  defaultBranch: string | null;
}

export interface PushFields {
  kind: 'push' | 'tag_push';
  ref: string;
  /** null when GitLab did not say (some group-hook deliveries omit it): unknown, not "branch created". */
  before: string | null;
  after: string;
  /** GitLab's checkout_sha: the commit a tag push points at (its `after` may be the tag object). */
  checkoutSha: string | null;
}

/** A pipeline that succeeded: it may have run `flux push artifact`. */
export interface PipelineArtifactFields {
  kind: 'artifact';
  source: 'pipeline';
  /** The full ref the pipeline ran for: refs/heads/<branch>, refs/tags/<tag>, or as GitLab gave it when it already was one. */
  ref: string;
  /** The commit the pipeline ran on. */
  sha: string;
  pipelineId: number;
}

/** A tag pushed to the container registry. */
export interface RegistryArtifactFields {
  kind: 'artifact';
  source: 'registry';
  /** The registry repository, e.g. group/app/manifests: the project path, or under it. */
  repository: string;
  tag: string;
  digest: string | null;
}

/**
 * Where an idempotency key comes from; keys of different scopes never collide.
 *  - gitlab: Idempotency-Key (else webhook-id) as GitLab sent it;
 *  - gitlab_change: one change of a repository_update delivery, `<delivery key>#<index>`;
 *  - registry: a container registry event id.
 */
export type KeyScope = 'gitlab' | 'gitlab_change' | 'registry';

export interface IdempotencyKey {
  scope: KeyScope;
  value: string;
}

/** What arrival adds to an event before it is stored. */
export interface Arrival {
  userUsername: string | null;
  receivedAt: Date;
  /** null: no dedup (the delivery carried no key). */
  idempotencyKey: IdempotencyKey | null;
}

/** What storing adds: the id (a bigint, as a decimal string) and the arrival time. */
export interface Stored {
  id: string;
  /** ISO 8601. */
  receivedAt: string;
}

export interface PushEvent extends ProjectFields, PushFields, Arrival {}
export interface PipelineArtifactEvent extends ProjectFields, PipelineArtifactFields, Arrival {}
export interface RegistryArtifactEvent extends ProjectFields, RegistryArtifactFields, Arrival {}
export type ArtifactEvent = PipelineArtifactEvent | RegistryArtifactEvent;
/** An event on its way into the log. */
export type NewEvent = PushEvent | ArtifactEvent;

export interface StoredPush extends ProjectFields, PushFields, Stored {}
export interface StoredPipelineArtifact extends ProjectFields, PipelineArtifactFields, Stored {}
export interface StoredRegistryArtifact extends ProjectFields, RegistryArtifactFields, Stored {}
export type StoredArtifact = StoredPipelineArtifact | StoredRegistryArtifact;
/** An event as stored in the log (and carried by the doorbell). */
export type StoredEvent = StoredPush | StoredArtifact;

/** The stored form of a new event, once the log gave it an id. (Literals, not spreads: it runs once per event stored.) */
export function storedEvent(event: NewEvent, id: string): StoredEvent {
  const receivedAt = event.receivedAt.toISOString();
  const { projectId, projectPath, visibility, defaultBranch } = event;
  if (event.kind !== 'artifact') {
    const { kind, ref, before, after, checkoutSha } = event;
    return { id, receivedAt, projectId, projectPath, visibility, defaultBranch, kind, ref, before, after, checkoutSha };
  }
  if (event.source === 'pipeline') {
    const { kind, source, ref, sha, pipelineId } = event;
    return { id, receivedAt, projectId, projectPath, visibility, defaultBranch, kind, source, ref, sha, pipelineId };
  }
  const { kind, source, repository, tag, digest } = event;
  return { id, receivedAt, projectId, projectPath, visibility, defaultBranch, kind, source, repository, tag, digest };
}

/** What an event's kind says, as stored or as the admin API shows it. */
type EventFields =
  | Pick<PushFields, 'kind' | 'ref' | 'after' | 'checkoutSha'>
  | Pick<PipelineArtifactFields, 'kind' | 'source' | 'ref' | 'sha'>
  | Pick<RegistryArtifactFields, 'kind' | 'source' | 'repository' | 'tag' | 'digest'>;

/**
 * What the event is about: for pushes the commit (GitLab's checkout_sha when it has one, since a
 * tag's `after` may be the tag object); a pipeline's commit; a registry push's digest, else its tag.
 */
export function commitOf(e: EventFields): string {
  if (e.kind !== 'artifact') return e.checkoutSha ?? e.after;
  return e.source === 'pipeline' ? e.sha : (e.digest ?? e.tag);
}

/** The ref an event concerns; a registry push has a repository and a tag instead. */
export function refOf(e: EventFields): string {
  if (e.kind !== 'artifact' || e.source === 'pipeline') return e.ref;
  return `${e.repository}:${e.tag}`;
}
