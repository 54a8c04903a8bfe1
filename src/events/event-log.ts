/**
 * The push event log in Postgres: append (group commit, one statement per batch), read after an
 * id, admin listing, delivery counts. Postgres is the source of truth; the doorbell only says
 * "look".
 */
import type pg from 'pg';
import type { Logger } from 'pino';
import { isStoreUnavailable } from '../db/pool.js';
import type { Metrics } from '../metrics.js';
import { createGroupCommit, type BatchOutcome, type Submission } from './group-commit.js';
import type { PushEvent, StoredEvent } from './push-event.js';

export interface AppendResult {
  eventId: string;
  duplicate: boolean;
}

/** New events of one committed batch, and the highest id that preceded them in the log. */
export interface AppendedBatch {
  prevId: string;
  events: StoredEvent[];
}

export interface LoggedEvent extends StoredEvent {
  userUsername: string | null;
  deliveredCount: number;
}

const MAX_BATCH = 256;
const MAX_BIGINT = 2n ** 63n - 1n;

/** Event ids are bigints: a cursor past the largest one has nothing after it (and would not fit a query). */
const beyondAnyId = (afterId: string) => BigInt(afterId) >= MAX_BIGINT;

interface EventRow {
  id: string;
  kind: 'push' | 'tag_push';
  project_id: string;
  project_path: string;
  visibility: number | null;
  default_branch: string | null;
  ref: string;
  before_sha: string;
  after_sha: string;
  checkout_sha: string | null;
  received_at: Date;
}

const EVENT_COLUMNS =
  'id, kind, project_id, project_path, visibility, default_branch, ref, before_sha, after_sha, checkout_sha, received_at';

export function toStoredEvent(row: EventRow): StoredEvent {
  return {
    id: row.id,
    kind: row.kind,
    projectId: Number(row.project_id),
    projectPath: row.project_path,
    visibility: row.visibility,
    defaultBranch: row.default_branch,
    ref: row.ref,
    before: row.before_sha,
    after: row.after_sha,
    checkoutSha: row.checkout_sha,
    receivedAt: row.received_at.toISOString(),
  };
}

export function createEventLog(
  pool: pg.Pool,
  deps: { log: Logger; metrics: Metrics; onAppended: (batch: AppendedBatch) => void },
) {
  interface AppendRow {
    ord: number;
    event_id: string;
    duplicate: boolean;
    prev_id: string;
  }

  /** One statement, one transaction: the events and their projects. Collects what to ring the doorbell with. */
  async function appendRows(items: { ord: number; event: PushEvent }[], doorbell: AppendedBatch[]): Promise<AppendRow[]> {
    const payload = items.map(({ ord, event: e }) => ({
      ord,
      kind: e.kind,
      project_id: e.projectId,
      project_path: e.projectPath,
      visibility: e.visibility,
      default_branch: e.defaultBranch,
      ref: e.ref,
      before_sha: e.before,
      after_sha: e.after,
      checkout_sha: e.checkoutSha,
      user_username: e.userUsername,
      idempotency_key: e.idempotencyKey,
      received_at: e.receivedAt.toISOString(),
    }));
    const { rows } = await pool.query<AppendRow>(
      'SELECT ord, event_id, duplicate, prev_id FROM append_push_events($1::jsonb)',
      [JSON.stringify(payload)],
    );
    deps.metrics.appendBatchSize.observe(items.length);

    const byOrd = new Map(items.map((item) => [item.ord, item.event]));
    const appended = rows
      .filter((r) => !r.duplicate)
      .map((r): StoredEvent => {
        const e = byOrd.get(r.ord)!;
        return {
          id: r.event_id,
          kind: e.kind,
          projectId: e.projectId,
          projectPath: e.projectPath,
          visibility: e.visibility,
          defaultBranch: e.defaultBranch,
          ref: e.ref,
          before: e.before,
          after: e.after,
          checkoutSha: e.checkoutSha,
          receivedAt: e.receivedAt.toISOString(),
        };
      });
    if (appended.length > 0) doorbell.push({ prevId: rows[0]!.prev_id, events: appended });
    return rows;
  }

  async function writeBatch(events: PushEvent[]): Promise<BatchOutcome<AppendResult>> {
    // The same key twice in one batch: only the first goes to the database.
    const firstIndexOfKey = new Map<string, number>();
    const unique: { ord: number; event: PushEvent }[] = [];
    events.forEach((event, index) => {
      const key = event.idempotencyKey;
      if (key !== null) {
        if (firstIndexOfKey.has(key)) return;
        firstIndexOfKey.set(key, index);
      }
      unique.push({ ord: index, event });
    });

    const rows = new Map<number, AppendRow>();
    const failures = new Map<number, unknown>();
    const doorbell: AppendedBatch[] = [];
    try {
      for (const row of await appendRows(unique, doorbell)) rows.set(row.ord, row);
    } catch (err) {
      if (unique.length === 1 || isStoreUnavailable(err)) throw err;
      // The database refused the batch for its content: find the culprit by writing each event
      // alone, so that one bad event cannot fail every webhook that happened to arrive with it.
      deps.log.warn({ err: (err as Error).message, events: unique.length }, 'event batch refused; appending its events one by one');
      for (const item of unique) {
        try {
          for (const row of await appendRows([item], doorbell)) rows.set(row.ord, row);
        } catch (single) {
          failures.set(item.ord, single);
        }
      }
    }

    const outcomes = events.map((event, index): PromiseSettledResult<AppendResult> => {
      const key = event.idempotencyKey;
      const ord = key !== null ? firstIndexOfKey.get(key)! : index;
      if (failures.has(ord)) return { status: 'rejected', reason: failures.get(ord) };
      const row = rows.get(ord);
      if (!row) return { status: 'rejected', reason: new Error(`append_push_events returned no row for element ${ord}`) };
      return { status: 'fulfilled', value: { eventId: row.event_id, duplicate: row.duplicate || ord !== index } };
    });
    return {
      outcomes,
      afterCommit: () => {
        for (const batch of doorbell) deps.onAppended(batch);
      },
    };
  }

  const committer = createGroupCommit(writeBatch, MAX_BATCH);

  let deliveries = new Map<string, number>();
  async function flushDeliveries(): Promise<void> {
    if (deliveries.size === 0) return;
    const batch = deliveries;
    deliveries = new Map();
    try {
      await pool.query(
        `UPDATE push_events e SET delivered_count = e.delivered_count + d.n
         FROM unnest($1::bigint[], $2::int[]) AS d(id, n) WHERE e.id = d.id`,
        [[...batch.keys()], [...batch.values()]],
      );
    } catch (err) {
      deps.log.warn({ err: (err as Error).message }, 'could not store delivery counts; will retry');
      for (const [id, n] of batch) deliveries.set(id, (deliveries.get(id) ?? 0) + n);
    }
  }
  const deliveryTimer = setInterval(() => void flushDeliveries(), 1000);
  deliveryTimer.unref();

  return {
    /** Stores the event (deduplicated by its idempotency key) with everything concurrent to it. */
    append(event: PushEvent): Submission<AppendResult> {
      return committer.submit(event);
    },

    /** Events after `afterId` in id order, optionally only of the given (lower-cased) project paths. */
    async readAfter(afterId: string, limit: number, projects?: string[]): Promise<StoredEvent[]> {
      if (beyondAnyId(afterId)) return [];
      const { rows } = projects
        ? await pool.query<EventRow>(
            `SELECT ${EVENT_COLUMNS} FROM push_events
             WHERE id > $1 AND lower(project_path) = ANY($2::text[]) ORDER BY id LIMIT $3`,
            [afterId, projects, limit],
          )
        : await pool.query<EventRow>(`SELECT ${EVENT_COLUMNS} FROM push_events WHERE id > $1 ORDER BY id LIMIT $2`, [
            afterId,
            limit,
          ]);
      return rows.map(toStoredEvent);
    },

    /** The admin view of the log. `project` is a path (any case) or a numeric project id. */
    async list(filter: { project?: string; after?: string; limit: number }): Promise<LoggedEvent[]> {
      if (filter.after !== undefined && beyondAnyId(filter.after)) return [];
      const byId = filter.project !== undefined && /^\d{1,18}$/.test(filter.project);
      const { rows } = await pool.query<EventRow & { user_username: string | null; delivered_count: number }>(
        `SELECT ${EVENT_COLUMNS}, user_username, delivered_count FROM push_events
         WHERE id > $1
           AND ($2::text IS NULL OR ${byId ? 'project_id = $2::bigint' : 'lower(project_path) = lower($2)'})
         ORDER BY id LIMIT $3`,
        [filter.after ?? '0', filter.project ?? null, filter.limit],
      );
      return rows.map((row) => ({
        ...toStoredEvent(row),
        userUsername: row.user_username,
        deliveredCount: row.delivered_count,
      }));
    },

    /** One event of the log, or undefined (unknown, or removed by retention). */
    async get(id: string): Promise<LoggedEvent | undefined> {
      const { rows } = await pool.query<EventRow & { user_username: string | null; delivered_count: number }>(
        `SELECT ${EVENT_COLUMNS}, user_username, delivered_count FROM push_events WHERE id = $1`,
        [id],
      );
      const row = rows[0];
      return row && { ...toStoredEvent(row), userUsername: row.user_username, deliveredCount: row.delivered_count };
    },

    async highestId(): Promise<string> {
      const { rows } = await pool.query<{ max: string | null }>('SELECT max(id) AS max FROM push_events');
      return rows[0]?.max ?? '0';
    },

    /** Every event up to this id may have been removed by retention. */
    async prunedThrough(): Promise<string> {
      const { rows } = await pool.query<{ pruned_through: string }>('SELECT pruned_through FROM event_log_state');
      return rows[0]?.pruned_through ?? '0';
    },

    /** Counts frames written for an event; stored in batches, once a second. */
    countDeliveries(eventId: string, frames: number): void {
      if (frames > 0) deliveries.set(eventId, (deliveries.get(eventId) ?? 0) + frames);
    },

    async close(): Promise<void> {
      clearInterval(deliveryTimer);
      await flushDeliveries();
    },
  };
}

export type EventLog = ReturnType<typeof createEventLog>;
