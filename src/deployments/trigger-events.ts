/**
 * Reading events from the log as deployment triggers: pushes and tag pushes (GitRepositories),
 * and artifact events from pipelines and the container registry (OCIRepositories; their commit
 * comes from the artifact's origin metadata once the source shows it, see matching.ts).
 */
import type pg from 'pg';
import { shortRef, type CommitTarget } from './commit-target.js';
import { triggerOf, type Trigger, type TriggerInput } from './matching.js';

/** Columns of `push_events e` a trigger is made of. */
export const TRIGGER_COLUMNS =
  'e.id AS event_id, e.kind, e.source, e.project_id, e.project_path, e.ref, e.after_sha, e.checkout_sha, e.sha, e.repository, e.tag, e.digest, e.received_at';

export interface TriggerRow {
  event_id: string;
  kind: string;
  source: string | null;
  project_id: string;
  project_path: string;
  ref: string | null;
  after_sha: string | null;
  checkout_sha: string | null;
  sha: string | null;
  repository: string | null;
  tag: string | null;
  digest: string | null;
  received_at: Date;
}

export interface TriggerEvent {
  eventId: string;
  receivedAt: Date;
  trigger: Trigger;
  /** Where its commit statuses go: known from the push itself; for artifacts, once the source shows the artifact's origin. */
  target: CommitTarget | undefined;
}

function inputOf(row: TriggerRow): TriggerInput | undefined {
  const projectPath = row.project_path;
  if ((row.kind === 'push' || row.kind === 'tag_push') && row.ref !== null && row.after_sha !== null) {
    return { kind: row.kind, projectPath, ref: row.ref, after: row.after_sha, checkoutSha: row.checkout_sha };
  }
  if (row.kind !== 'artifact') return undefined;
  if (row.source === 'pipeline' && row.ref !== null && row.sha !== null) {
    return { kind: 'artifact', source: 'pipeline', projectPath, ref: row.ref, sha: row.sha };
  }
  if (row.source === 'registry' && row.repository !== null && row.tag !== null) {
    return { kind: 'artifact', source: 'registry', projectPath, repository: row.repository, tag: row.tag, digest: row.digest };
  }
  return undefined;
}

export function triggerEventOf(row: TriggerRow): TriggerEvent | undefined {
  const input = inputOf(row);
  const trigger = input && triggerOf(input);
  if (!trigger) return undefined;
  const target = trigger.type === 'git' ? { project: String(row.project_id), sha: trigger.sha, ref: shortRef(trigger.ref) } : undefined;
  return { eventId: row.event_id, receivedAt: row.received_at, trigger, target };
}

export async function readTriggerEvents(client: pg.PoolClient, eventIds: string[]): Promise<Map<string, TriggerEvent>> {
  const { rows } = await client.query<TriggerRow>(`SELECT ${TRIGGER_COLUMNS} FROM push_events e WHERE e.id = ANY($1::bigint[])`, [eventIds]);
  const events = new Map<string, TriggerEvent>();
  for (const row of rows) {
    const event = triggerEventOf(row);
    if (event) events.set(event.eventId, event);
  }
  return events;
}
