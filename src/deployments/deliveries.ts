/**
 * Per-agent deliveries: which agents got an event, and when. The hub and replay call `record`
 * for every frame written; the writer stores what gathered since its last write (at most one
 * write per WRITE_INTERVAL_MS) in one statement, without agent locks, as one row per event and
 * millisecond listing its agents: a push fanned out to 2,000 agents is a dozen rows, not 2,000
 * (migrations/1764600000000_deliveries_as_lists.sql). Only the deliveries of agents that have
 * reported objects go on to a locked transaction, where their deployments are made
 * (tracker.onDelivered).
 *
 * Why no deployment is missed although the INSERT takes no lock: which agents have objects is
 * asked after the INSERT committed, and a status write that stored objects new to its
 * connection checks their deliveries again after its own commit (cluster-state.ts
 * `recheckFresh`). Each side looks after its own commit, so whichever commits second sees the
 * other's rows; without the lock a delivery can only be followed twice, which makes nothing twice.
 */
import type pg from 'pg';
import type { Logger } from 'pino';
import { candidateObjects } from '../cluster/object-store.js';
import { inTransaction, isPermanent, lockAgents } from '../db/transaction.js';
import { sleep } from '../gitlab/api/rate-limiter.js';
import type { Metrics } from '../metrics.js';
import { emptyOutcome, type DeploymentTracker, type TrackerOutcome } from './tracker.js';
import { readTriggerEvents } from './trigger-events.js';
import { retryDelayMs } from '../lib/retry-delay.js';

export interface Delivery {
  eventId: string;
  agentId: string;
  deliveredAt: Date;
}

export interface DeliveryRecorder {
  /** Push frames for `eventId` were written to connections of these agents (a fan-out: all of them, in one call). */
  record(eventId: string, agentIds: string[]): void;
}

export interface DeliveryWriterDeps {
  pool: pg.Pool;
  tracker: DeploymentTracker;
  metrics: Metrics;
  log: Logger;
  /** After new deliveries committed: the events they are of. */
  onDelivered(eventIds: Set<string>): void;
  /** After their deployments committed: what moved. */
  onWritten(outcome: TrackerOutcome): void;
}

/** Beyond this many unwritten deliveries (Postgres away for long), new ones are not recorded. */
const MAX_PENDING = 200_000;
/** Rows per INSERT; a bigger flush is written in several. */
const ROWS_PER_STATEMENT = 5_000;
/** The least time between two writes' starts; the first delivery after a quiet spell is written at once. */
const WRITE_INTERVAL_MS = 25;
/** Agents locked by one transaction (each lock is a slot of Postgres's shared lock table). */
const AGENTS_PER_TRANSACTION = 100;

/** The deliveries of the first `n` agents among them, and the rest. */
function splitAgents(deliveries: Delivery[], n: number): [Delivery[], Delivery[]] {
  const agents = new Set<string>();
  const first: Delivery[] = [];
  const rest: Delivery[] = [];
  for (const d of deliveries) {
    if (agents.has(d.agentId) || agents.size < n) {
      agents.add(d.agentId);
      first.push(d);
    } else rest.push(d);
  }
  return [first, rest];
}

/** event id → agent id → first delivered at (ms). */
type Pending = Map<string, Map<string, number>>;

/** Deliveries of one event in one millisecond: a fan-out to 2,000 agents is a dozen of them. */
interface Group {
  eventId: string;
  at: number;
  agentIds: string[];
}

/** The rows of one INSERT. */
interface Chunk {
  groups: Group[];
  rows: number;
}

function chunksOf(pending: Pending): Chunk[] {
  const chunks: Chunk[] = [];
  let chunk: Chunk | undefined;
  for (const [eventId, agents] of pending) {
    let group: Group | undefined;
    for (const [agentId, at] of agents) {
      if (!chunk || chunk.rows >= ROWS_PER_STATEMENT) {
        chunks.push((chunk = { groups: [], rows: 0 }));
        group = undefined;
      }
      if (group?.at !== at) chunk.groups.push((group = { eventId, at, agentIds: [] }));
      group.agentIds.push(agentId);
      chunk.rows++;
    }
  }
  return chunks;
}

export function createDeliveryWriter(deps: DeliveryWriterDeps) {
  const { pool, tracker, metrics, log } = deps;
  let pending: Pending = new Map();
  let pendingCount = 0;
  // Each stage is kept across failed attempts, so a retry repeats only what did not commit.
  /** Taken from `pending`, not yet inserted. */
  const chunks: Chunk[] = [];
  /** Inserted; whether their agents have objects is not yet asked. */
  const unchecked: Chunk[] = [];
  /** Of agents that have objects: their deployments are still to be made. */
  let unfollowed: Delivery[] = [];
  let writing: Promise<void> | undefined;
  let attempt = 0;
  let closed = false;

  const hasWork = () => pendingCount > 0 || chunks.length > 0 || unchecked.length > 0 || unfollowed.length > 0;
  const waiting = () => pendingCount + chunks.reduce((n, c) => n + c.rows, 0);

  let lastWriteAt = 0;

  function schedule(): void {
    if (writing || closed) return;
    // After the caller's synchronous work (a fan-out records every frame first), and at most one
    // write per WRITE_INTERVAL_MS: at 500 pushes a second, one write was three statements and a
    // bus message per push, each a wake-up of Postgres or Redis on a busy machine.
    const wait = Math.max(0, lastWriteAt + WRITE_INTERVAL_MS - Date.now());
    writing = new Promise<void>((resolve) => (wait === 0 ? setImmediate(resolve) : setTimeout(resolve, wait)))
      .then(writeOnce)
      .finally(() => {
        writing = undefined;
        if (hasWork()) schedule();
      });
  }

  /** Writes what waits, each stage to its end; on a failure, waits its retry delay. */
  async function writeOnce(): Promise<void> {
    lastWriteAt = Date.now();
    chunks.push(...chunksOf(pending));
    pending = new Map();
    pendingCount = 0;
    try {
      while (chunks.length > 0) {
        await insert(chunks[0]!);
        chunks.shift();
      }
      while (unchecked.length > 0) {
        unfollowed.push(...(await withObjects(unchecked[0]!)));
        unchecked.shift();
      }
      while (unfollowed.length > 0) {
        const [batch, rest] = splitAgents(unfollowed, AGENTS_PER_TRANSACTION);
        await follow(batch);
        unfollowed = rest;
      }
      attempt = 0;
    } catch (err) {
      metrics.statusWriteFailures.inc();
      const delay = retryDelayMs(attempt++);
      log.warn({ err: (err as Error).message, retryInMs: delay }, 'deliveries not written; retrying');
      if (!closed) await sleep(delay);
    }
  }

  /** Inserts the deliveries: one row per group; the events go on to `unchecked`. */
  async function insert(chunk: Chunk): Promise<void> {
    const timer = metrics.statusWriteDuration.startTimer();
    // Lists go in as one string each: 2,000 array elements escaped one by one cost more than the INSERT.
    await pool.query(
      `INSERT INTO event_deliveries (event_id, delivered_at, agent_ids)
       SELECT g.event_id, to_timestamp(g.ms / 1000.0), string_to_array(g.agents, ',')::uuid[]
       FROM unnest(string_to_array($1, ',')::bigint[], string_to_array($2, ',')::float8[], string_to_array($3, ';'))
         AS g(event_id, ms, agents)`,
      [
        chunk.groups.map((g) => g.eventId).join(','),
        chunk.groups.map((g) => g.at).join(','),
        chunk.groups.map((g) => g.agentIds.join(',')).join(';'),
      ],
    );
    timer();
    unchecked.push(chunk);
    deps.onDelivered(new Set(chunk.groups.map((g) => g.eventId)));
  }

  /**
   * Of the deliveries just inserted, those of agents that have reported objects: only they can
   * have deployments. Asked after the INSERT committed, in a statement of its own: see the top.
   */
  async function withObjects(inserted: Chunk): Promise<Delivery[]> {
    const agentIds = new Set(inserted.groups.flatMap((g) => g.agentIds));
    const { rows } = await pool.query<{ agent_id: string }>(
      `SELECT DISTINCT agent_id FROM cluster_objects WHERE agent_id = ANY(string_to_array($1, ',')::uuid[])`,
      [[...agentIds].join(',')],
    );
    if (rows.length === 0) return [];
    const reporting = new Set(rows.map((r) => r.agent_id));
    return inserted.groups.flatMap((g) =>
      g.agentIds.filter((agentId) => reporting.has(agentId)).map((agentId) => ({ eventId: g.eventId, agentId, deliveredAt: new Date(g.at) })),
    );
  }

  /** Under the agents' locks: their deployments of these deliveries. An agent whose write is refused for good (deleted meanwhile) is dropped, not retried. */
  async function follow(fresh: Delivery[]): Promise<void> {
    try {
      await followOnce(fresh);
    } catch (err) {
      if (!isPermanent(err)) throw err;
      const byAgent = new Map<string, Delivery[]>();
      for (const d of fresh) {
        const mine = byAgent.get(d.agentId);
        if (mine) mine.push(d);
        else byAgent.set(d.agentId, [d]);
      }
      for (const mine of byAgent.values()) {
        await followOnce(mine).catch((single: unknown) => {
          if (!isPermanent(single)) throw single;
          log.warn({ agentId: mine[0]!.agentId, err: (single as Error).message }, 'deployments of a delivery not made and not retried');
        });
      }
    }
  }

  async function followOnce(fresh: Delivery[]): Promise<void> {
    const outcome = await inTransaction(pool, async (client) => {
      await lockAgents(client, [...new Set(fresh.map((d) => d.agentId))]);
      return deploymentsOf(client, tracker, fresh);
    });
    tracker.settle(outcome);
    deps.onWritten(outcome);
  }

  const recorder: DeliveryRecorder = {
    record(eventId, agentIds) {
      if (agentIds.length === 0) return;
      if (waiting() + agentIds.length > MAX_PENDING) {
        log.warn({ eventId, agents: agentIds.length }, 'too many deliveries waiting for Postgres; these are not recorded');
        return;
      }
      let agents = pending.get(eventId);
      if (!agents) pending.set(eventId, (agents = new Map()));
      const now = Date.now();
      for (const agentId of agentIds) {
        if (agents.has(agentId)) continue;
        agents.set(agentId, now);
        pendingCount++;
      }
      schedule();
    },
  };

  return {
    ...recorder,
    /** Waits (a while) for what is recorded to be written; for shutdown. */
    async close(timeoutMs = 5000): Promise<void> {
      closed = true;
      const drain = async () => {
        await writing;
        if (hasWork()) await writeOnce();
      };
      await Promise.race([drain(), sleep(timeoutMs)]);
    },
  };
}

export type DeliveryWriter = ReturnType<typeof createDeliveryWriter>;

/** Inside the caller's transaction, which holds the agents' locks: deployments for deliveries already stored. */
async function deploymentsOf(client: pg.PoolClient, tracker: DeploymentTracker, fresh: Delivery[]): Promise<TrackerOutcome> {
  const events = await readTriggerEvents(client, [...new Set(fresh.map((d) => d.eventId))]);
  if (events.size === 0) return emptyOutcome();
  const projects = [...new Set([...events.values()].map((e) => e.trigger.projectPath.toLowerCase()))];
  const objects = await candidateObjects(client, [...new Set(fresh.map((d) => d.agentId))], projects);
  if (objects.size === 0) return emptyOutcome();
  return tracker.onDelivered(client, fresh, events, objects);
}
