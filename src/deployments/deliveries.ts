/**
 * Per-agent deliveries: (event, agent, first delivered at). The hub and replay call `record`
 * for every frame written; the writer stores what gathered since its last write in one
 * statement, without agent locks (a push fanned out to 2,000 agents is one INSERT, not twenty
 * locked transactions). Only the fresh deliveries of agents that have reported objects go on to
 * a locked transaction, where their deployments are made (tracker.onDelivered).
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
  /** A push frame for `eventId` was written to a connection of `agentId`. */
  record(eventId: string, agentId: string): void;
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

/** The rows of one INSERT. */
interface Chunk {
  eventIds: string[];
  agentIds: string[];
  times: number[];
}

function chunksOf(pending: Pending): Chunk[] {
  const chunks: Chunk[] = [];
  let chunk: Chunk | undefined;
  for (const [eventId, agents] of pending) {
    for (const [agentId, at] of agents) {
      if (!chunk || chunk.eventIds.length >= ROWS_PER_STATEMENT) chunks.push((chunk = { eventIds: [], agentIds: [], times: [] }));
      chunk.eventIds.push(eventId);
      chunk.agentIds.push(agentId);
      chunk.times.push(at);
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
  /** Inserted and new (first per event and agent); whether their agents have objects is not yet asked. */
  const unchecked: Chunk[] = [];
  /** Of agents that have objects: their deployments are still to be made. */
  let unfollowed: Delivery[] = [];
  let writing: Promise<void> | undefined;
  let attempt = 0;
  let closed = false;

  const hasWork = () => pendingCount > 0 || chunks.length > 0 || unchecked.length > 0 || unfollowed.length > 0;
  const waiting = () => pendingCount + chunks.reduce((n, c) => n + c.eventIds.length, 0);

  function schedule(): void {
    if (writing || closed) return;
    // After the caller's synchronous work: a fan-out records every frame first.
    writing = new Promise<void>((resolve) => setImmediate(resolve)).then(writeLoop).finally(() => {
      writing = undefined;
      if (hasWork()) schedule();
    });
  }

  async function writeLoop(): Promise<void> {
    while (hasWork()) {
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
        if (closed) return;
        await sleep(delay);
      }
    }
  }

  /** Inserts the deliveries, first wins; the new ones go on to `unchecked`. */
  async function insert(chunk: Chunk): Promise<void> {
    const timer = metrics.statusWriteDuration.startTimer();
    // Lists go in as one string each and the new rows come back as one list of agents per event:
    // 2,000 array elements escaped, or rows parsed, one by one cost more than the INSERT.
    const { rows } = await pool.query<{ event_id: string; agents: string }>(
      `WITH ins AS (
         INSERT INTO event_deliveries (event_id, agent_id, delivered_at)
         SELECT d.event_id, d.agent_id, to_timestamp(d.ms / 1000.0)
         FROM unnest(string_to_array($1, ',')::bigint[], string_to_array($2, ',')::uuid[], string_to_array($3, ',')::float8[])
           AS d(event_id, agent_id, ms)
         ON CONFLICT (event_id, agent_id) DO NOTHING
         RETURNING event_id, agent_id)
       SELECT event_id, string_agg(agent_id::text, ',') AS agents FROM ins GROUP BY event_id`,
      [chunk.eventIds.join(','), chunk.agentIds.join(','), chunk.times.join(',')],
    );
    timer();
    if (rows.length === 0) return;
    const fresh = new Map(rows.map((r) => [r.event_id, r.agents.split(',')]));
    const inserted = [...fresh.values()].reduce((n, agents) => n + agents.length, 0);
    if (inserted === chunk.eventIds.length) unchecked.push(chunk);
    else {
      const news = new Map([...fresh].map(([eventId, agents]) => [eventId, new Set(agents)]));
      const kept: Chunk = { eventIds: [], agentIds: [], times: [] };
      chunk.eventIds.forEach((eventId, i) => {
        if (!news.get(eventId)?.has(chunk.agentIds[i]!)) return;
        kept.eventIds.push(eventId);
        kept.agentIds.push(chunk.agentIds[i]!);
        kept.times.push(chunk.times[i]!);
      });
      unchecked.push(kept);
    }
    deps.onDelivered(new Set(fresh.keys()));
  }

  /**
   * Of new deliveries, those of agents that have reported objects: only they can have
   * deployments. Asked after the INSERT committed, in a statement of its own: see the top.
   */
  async function withObjects(fresh: Chunk): Promise<Delivery[]> {
    const { rows } = await pool.query<{ agent_id: string }>(
      `SELECT DISTINCT agent_id FROM cluster_objects WHERE agent_id = ANY(string_to_array($1, ',')::uuid[])`,
      [[...new Set(fresh.agentIds)].join(',')],
    );
    if (rows.length === 0) return [];
    const reporting = new Set(rows.map((r) => r.agent_id));
    const deliveries: Delivery[] = [];
    fresh.agentIds.forEach((agentId, i) => {
      if (reporting.has(agentId)) deliveries.push({ eventId: fresh.eventIds[i]!, agentId, deliveredAt: new Date(fresh.times[i]!) });
    });
    return deliveries;
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
    record(eventId, agentId) {
      let agents = pending.get(eventId);
      if (!agents) pending.set(eventId, (agents = new Map()));
      if (agents.has(agentId)) return;
      if (pendingCount >= MAX_PENDING || (chunks.length > 0 && waiting() >= MAX_PENDING)) {
        log.warn({ agentId, eventId }, 'too many deliveries waiting for Postgres; this one is not recorded');
        return;
      }
      agents.set(agentId, Date.now());
      pendingCount++;
      schedule();
    },
  };

  return {
    ...recorder,
    /** Waits (a while) for what is recorded to be written; for shutdown. */
    async close(timeoutMs = 5000): Promise<void> {
      const done = writing;
      closed = true;
      if (done) await Promise.race([done, sleep(timeoutMs)]);
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
