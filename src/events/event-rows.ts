/** The event log's rows: push_events as events, and events as elements of an append batch. */
import type { NewEvent, StoredEvent } from './event.js';

export interface EventRow {
  id: string;
  kind: 'push' | 'tag_push' | 'artifact';
  source: 'pipeline' | 'registry' | null;
  project_id: string;
  project_path: string;
  visibility: number | null;
  default_branch: string | null;
  ref: string | null;
  before_sha: string | null;
  after_sha: string | null;
  checkout_sha: string | null;
  sha: string | null;
  pipeline_id: string | null;
  repository: string | null;
  tag: string | null;
  digest: string | null;
  received_at: Date;
}

export const EVENT_COLUMNS =
  'id, kind, source, project_id, project_path, visibility, default_branch, ref, before_sha, after_sha, checkout_sha, ' +
  'sha, pipeline_id, repository, tag, digest, received_at';

/** A row as its event. The table's CHECK constraint guarantees the columns each kind needs. */
export function toStoredEvent(row: EventRow): StoredEvent {
  const common = {
    id: row.id,
    projectId: Number(row.project_id),
    projectPath: row.project_path,
    visibility: row.visibility,
    defaultBranch: row.default_branch,
    receivedAt: row.received_at.toISOString(),
  };
  if (row.kind !== 'artifact') {
    return { ...common, kind: row.kind, ref: row.ref!, before: row.before_sha, after: row.after_sha!, checkoutSha: row.checkout_sha };
  }
  if (row.source === 'pipeline') {
    return { ...common, kind: 'artifact', source: 'pipeline', ref: row.ref!, sha: row.sha!, pipelineId: Number(row.pipeline_id) };
  }
  return { ...common, kind: 'artifact', source: 'registry', repository: row.repository!, tag: row.tag!, digest: row.digest };
}

/** An event as one element of append_push_events' JSON batch. */
export function toBatchElement(ord: number, e: NewEvent): Record<string, unknown> {
  const element: Record<string, unknown> = {
    ord,
    kind: e.kind,
    project_id: e.projectId,
    project_path: e.projectPath,
    visibility: e.visibility,
    default_branch: e.defaultBranch,
    user_username: e.userUsername,
    idempotency_key: e.idempotencyKey?.value ?? null,
    idempotency_scope: e.idempotencyKey?.scope ?? 'gitlab',
    received_at: e.receivedAt.toISOString(),
  };
  if (e.kind !== 'artifact') {
    element.ref = e.ref;
    element.before_sha = e.before;
    element.after_sha = e.after;
    element.checkout_sha = e.checkoutSha;
  } else if (e.source === 'pipeline') {
    element.source = e.source;
    element.ref = e.ref;
    element.sha = e.sha;
    element.pipeline_id = e.pipelineId;
  } else {
    element.source = e.source;
    element.repository = e.repository;
    element.tag = e.tag;
    element.digest = e.digest;
  }
  return element;
}

/** The key under which two events of one batch are the same delivery. */
export const keyOf = (e: NewEvent): string | null => (e.idempotencyKey ? `${e.idempotencyKey.scope}:${e.idempotencyKey.value}` : null);

/** The largest event id: a cursor beyond it has nothing after it (and would not fit a query). */
export const MAX_EVENT_ID = 2n ** 63n - 1n;

/** The admin view of a stored event. */
export type LoggedEvent = StoredEvent & {
  userUsername: string | null;
  deliveredCount: number;
};

export type LoggedEventRow = EventRow & { user_username: string | null; delivered_count: number };

/**
 * How many agents an event was delivered to (the contract's count: agents, not frames; an agent
 * that got it twice, on two connections or by replay, counts once), from its delivery lists.
 */
export const deliveredAgentsOf = (eventIdSql: string): string =>
  `(SELECT count(DISTINCT u.agent_id)::int FROM event_deliveries d CROSS JOIN LATERAL unnest(d.agent_ids) AS u(agent_id) WHERE d.event_id = ${eventIdSql})`;

export const LOGGED_EVENT_COLUMNS = `${EVENT_COLUMNS}, user_username, ${deliveredAgentsOf('push_events.id')} AS delivered_count`;

export function toLoggedEvent(row: LoggedEventRow): LoggedEvent {
  return { ...toStoredEvent(row), userUsername: row.user_username, deliveredCount: row.delivered_count };
}
