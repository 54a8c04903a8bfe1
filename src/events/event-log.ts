/**
 * The event log in Postgres (pushes and artifacts, table push_events): append (group commit, one
 * statement per batch), read after an id, admin listing. Postgres is the source of truth; the
 * doorbell only says "look".
 */
import type pg from 'pg';
import type { Logger } from 'pino';
import { isStoreUnavailable } from '../db/pool.js';
import type { Metrics } from '../metrics.js';
import { createGroupCommit, type BatchOutcome, type Submission } from './group-commit.js';
import { storedEvent, type NewEvent, type StoredEvent } from './event.js';
import {
  EVENT_COLUMNS,
  LOGGED_EVENT_COLUMNS,
  MAX_EVENT_ID,
  keyOf,
  toBatchElement,
  toLoggedEvent,
  toStoredEvent,
  type EventRow,
  type LoggedEvent,
  type LoggedEventRow,
} from './event-rows.js';

export interface AppendResult {
  eventId: string;
  duplicate: boolean;
}

/**
 * New events of one committed batch, and the id just below the first one it drew: every id up
 * to `prevId` belongs to batches drawn before it (which may commit after it: appends overlap).
 */
export interface AppendedBatch {
  prevId: string;
  events: StoredEvent[];
}

const MAX_BATCH = 256;
/**
 * Group commits in flight per replica. Appends may overlap now, but on the 2-core bench machine
 * two in flight halved the batches (15 → 8 events), cost more commits per event and lost
 * throughput and p99 (bench/README.md, issue 16); one it is. Other replicas' batches overlap.
 */
const APPENDS_IN_FLIGHT = 1;

/** Event ids are bigints: a cursor past the largest one has nothing after it (and would not fit a query). */
const beyondAnyId = (afterId: string) => BigInt(afterId) >= MAX_EVENT_ID;

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

  interface Element {
    ord: number;
    event: NewEvent;
  }

  /** One statement, one transaction: the events and their projects. Collects what to ring the doorbell with. */
  async function appendRows(items: Element[], doorbell: AppendedBatch[]): Promise<AppendRow[]> {
    const payload = items.map(({ ord, event }) => toBatchElement(ord, event));
    const { rows } = await pool.query<AppendRow>(
      'SELECT ord, event_id, duplicate, prev_id FROM append_push_events($1::jsonb)',
      [JSON.stringify(payload)],
    );
    deps.metrics.appendBatchSize.observe(items.length);

    const byOrd = new Map(items.map((item) => [item.ord, item.event]));
    const appended = rows.filter((r) => !r.duplicate).map((r) => storedEvent(byOrd.get(r.ord)!, r.event_id));
    if (appended.length > 0) doorbell.push({ prevId: rows[0]!.prev_id, events: appended });
    return rows;
  }

  /**
   * Writes the deliveries of one group commit in one statement. A delivery (one webhook's events)
   * is never split: it is stored whole or not at all.
   */
  async function writeBatch(deliveries: NewEvent[][]): Promise<BatchOutcome<AppendResult[]>> {
    // Elements are numbered across the batch; the same key twice: only the first goes to the database.
    const firstOrdOfKey = new Map<string, number>();
    const ordsOf: number[][] = [];
    const elementsOf: Element[][] = [];
    let ord = 0;
    for (const delivery of deliveries) {
      const ords: number[] = [];
      const elements: Element[] = [];
      for (const event of delivery) {
        const mine = ord++;
        const key = keyOf(event);
        const first = key === null ? undefined : firstOrdOfKey.get(key);
        if (first !== undefined) {
          ords.push(first);
          continue;
        }
        if (key !== null) firstOrdOfKey.set(key, mine);
        ords.push(mine);
        elements.push({ ord: mine, event });
      }
      ordsOf.push(ords);
      elementsOf.push(elements);
    }

    const rows = new Map<number, AppendRow>();
    const failures = new Map<number, unknown>();
    const doorbell: AppendedBatch[] = [];
    try {
      for (const row of await appendRows(elementsOf.flat(), doorbell)) rows.set(row.ord, row);
    } catch (err) {
      if (deliveries.length === 1 || isStoreUnavailable(err)) throw err;
      // The database refused the batch for its content: find the culprit by writing each delivery
      // alone, so that one bad event cannot fail every webhook that happened to arrive with it.
      deps.log.warn({ err: (err as Error).message, deliveries: deliveries.length }, 'event batch refused; appending its deliveries one by one');
      for (const elements of elementsOf) {
        if (elements.length === 0) continue;
        try {
          for (const row of await appendRows(elements, doorbell)) rows.set(row.ord, row);
        } catch (single) {
          for (const element of elements) failures.set(element.ord, single);
        }
      }
    }

    let next = 0;
    const outcomes = ordsOf.map((ords): PromiseSettledResult<AppendResult[]> => {
      const results: AppendResult[] = [];
      for (const at of ords) {
        const mine = next++;
        if (failures.has(at)) return { status: 'rejected', reason: failures.get(at) };
        const row = rows.get(at);
        if (!row) return { status: 'rejected', reason: new Error(`append_push_events returned no row for element ${at}`) };
        results.push({ eventId: row.event_id, duplicate: row.duplicate || at !== mine });
      }
      return { status: 'fulfilled', value: results };
    });
    return {
      outcomes,
      afterCommit: () => {
        for (const batch of doorbell) deps.onAppended(batch);
      },
    };
  }

  const committer = createGroupCommit(writeBatch, MAX_BATCH, APPENDS_IN_FLIGHT);

  /**
   * The log's horizon (migrations/1764400000000_overlapping_appends.sql): every id up to it is
   * final. Read in its own statement, before the rows, so that the rows' snapshot is newer.
   */
  async function readHorizon(): Promise<string> {
    const { rows } = await pool.query<{ horizon: string }>('SELECT push_events_horizon() AS horizon');
    return rows[0]!.horizon;
  }

  return {
    /**
     * Stores one delivery's events (each deduplicated by its idempotency key), all or none, with
     * everything concurrent to them. Results are in the delivery's order.
     */
    appendDelivery(events: NewEvent[]): Submission<AppendResult[]> {
      return committer.submit(events);
    },

    /** Stores one event: a delivery of one. */
    append(event: NewEvent): Submission<AppendResult> {
      const submission = committer.submit([event]);
      return { result: submission.result.then((results) => results[0]!), cancel: submission.cancel };
    },

    /**
     * Events after `afterId` in id order, optionally only of the given (lower-cased) project paths,
     * up to the log's horizon: never an event while one below it may still commit (appends overlap).
     */
    async readAfter(afterId: string, limit: number, projects?: string[]): Promise<StoredEvent[]> {
      if (beyondAnyId(afterId)) return [];
      const horizon = await readHorizon();
      if (BigInt(horizon) <= BigInt(afterId)) return [];
      const { rows } = projects
        ? await pool.query<EventRow>(
            `SELECT ${EVENT_COLUMNS} FROM push_events
             WHERE id > $1 AND id <= $4 AND lower(project_path) = ANY($2::text[]) ORDER BY id LIMIT $3`,
            [afterId, projects, limit, horizon],
          )
        : await pool.query<EventRow>(`SELECT ${EVENT_COLUMNS} FROM push_events WHERE id > $1 AND id <= $3 ORDER BY id LIMIT $2`, [
            afterId,
            limit,
            horizon,
          ]);
      return rows.map(toStoredEvent);
    },

    /** The admin view of the log, up to its horizon. `project` is a path (any case) or a numeric project id. */
    async list(filter: { project?: string; after?: string; limit: number }): Promise<LoggedEvent[]> {
      if (filter.after !== undefined && beyondAnyId(filter.after)) return [];
      const byId = filter.project !== undefined && /^\d{1,18}$/.test(filter.project);
      const horizon = await readHorizon();
      const { rows } = await pool.query<LoggedEventRow>(
        `SELECT ${LOGGED_EVENT_COLUMNS} FROM push_events
         WHERE id > $1 AND id <= $4
           AND ($2::text IS NULL OR ${byId ? 'project_id = $2::bigint' : 'lower(project_path) = lower($2)'})
         ORDER BY id LIMIT $3`,
        [filter.after ?? '0', filter.project ?? null, filter.limit, horizon],
      );
      return rows.map(toLoggedEvent);
    },

    /** One event of the log, or undefined (unknown, or removed by retention). */
    async get(id: string): Promise<LoggedEvent | undefined> {
      const { rows } = await pool.query<LoggedEventRow>(`SELECT ${LOGGED_EVENT_COLUMNS} FROM push_events WHERE id = $1`, [id]);
      return rows[0] && toLoggedEvent(rows[0]);
    },

    /** The highest id at or below the horizon: every id up to it is final (stored, or never will be). */
    async highestId(): Promise<string> {
      const { rows } = await pool.query<{ max: string | null }>(
        'SELECT LEAST(COALESCE((SELECT max(id) FROM push_events), 0), push_events_horizon()) AS max',
      );
      return rows[0]?.max ?? '0';
    },

    /** Every event up to this id may have been removed by retention. */
    async prunedThrough(): Promise<string> {
      const { rows } = await pool.query<{ pruned_through: string }>('SELECT pruned_through FROM event_log_state');
      return rows[0]?.pruned_through ?? '0';
    },
  };
}

export type EventLog = ReturnType<typeof createEventLog>;
