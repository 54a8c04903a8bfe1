/**
 * Reading events from the log as deployment triggers. Push and tag push events are what the log
 * holds today. Artifact events (kind 'artifact', from pipelines and the container registry) map
 * here too once ingest stores them: select their columns in TRIGGER_COLUMNS and turn the row
 * into a `TriggerInput` of kind 'artifact' in `triggerEventOf` — matching (matching.ts:
 * OCIRepository sources, the commit from the artifact's origin metadata) and commit statuses
 * already handle it.
 */
import type pg from 'pg';
import { shortRef, triggerOf, type CommitTarget, type Trigger, type TriggerInput } from './matching.js';

/** Columns of `push_events e` a trigger is made of. */
export const TRIGGER_COLUMNS = 'e.id AS event_id, e.kind, e.project_id, e.project_path, e.ref, e.after_sha, e.checkout_sha, e.received_at';

export interface TriggerRow {
  event_id: string;
  kind: string;
  project_id: string;
  project_path: string;
  ref: string;
  after_sha: string;
  checkout_sha: string | null;
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
  if (row.kind === 'push' || row.kind === 'tag_push') {
    return { kind: row.kind, projectPath: row.project_path, ref: row.ref, after: row.after_sha, checkoutSha: row.checkout_sha };
  }
  return undefined;
}

export function triggerEventOf(row: TriggerRow): TriggerEvent | undefined {
  const input = inputOf(row);
  const trigger = input && triggerOf(input);
  if (!trigger) return undefined;
  const target = trigger.type === 'git' ? { project: String(row.project_id), sha: trigger.sha, ref: shortRef(row.ref) } : undefined;
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
