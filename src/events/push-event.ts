/** The normalized push, whatever hook (project, group, system) brought it. */
export interface PushEvent {
  kind: 'push' | 'tag_push';
  projectId: number;
  projectPath: string;
  /** GitLab visibility_level at the time of the push; null when the payload did not say. */
  visibility: number | null;
  defaultBranch: string | null;
  ref: string;
  before: string;
  after: string;
  checkoutSha: string | null;
  userUsername: string | null;
  receivedAt: Date;
  idempotencyKey: string | null;
}

/** An event as stored in the log (and carried by the doorbell). */
export interface StoredEvent {
  id: string;
  kind: 'push' | 'tag_push';
  projectId: number;
  projectPath: string;
  visibility: number | null;
  defaultBranch: string | null;
  ref: string;
  before: string;
  after: string;
  /** GitLab's checkout_sha: the commit a tag push points at (its `after` may be the tag object). */
  checkoutSha: string | null;
  /** ISO 8601. */
  receivedAt: string;
}
