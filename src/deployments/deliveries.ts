/**
 * Per-agent deliveries: (event, agent, first delivered at), recorded off the hot path. The hub
 * and replay call `record` for every frame written (a map insert); a flush a few milliseconds
 * later writes what gathered in one transaction, first wins, and creates the deployments of
 * the deliveries that were new. A failed flush keeps its records and tries again.
 */
import type pg from 'pg';
import type { Logger } from 'pino';
import { candidateObjects } from '../cluster/object-store.js';
import { inTransaction, lockAgents } from '../db/transaction.js';
import type { DeploymentTracker, TrackerOutcome } from './tracker.js';
import { readTriggerEvents } from './trigger-events.js';

/** Records gather this long before a flush, so that a burst of pushes costs one transaction. */
const GATHER_MS = 20;
const RETRY_MS = 1000;
/** Beyond this many unflushed records (Postgres away for long), the oldest are dropped. */
const MAX_PENDING = 200_000;
/**
 * Agents per transaction: each one's advisory lock takes a slot of Postgres's shared lock table
 * (max_locks_per_transaction × max_connections, 6,400 by default), so a push fanned out to
 * 10,000 agents is recorded in several transactions.
 */
const AGENTS_PER_TRANSACTION = 200;

export interface DeliveryRecorderDeps {
  pool: pg.Pool;
  tracker: DeploymentTracker;
  log: Logger;
  /** After a flush committed: what it changed. */
  onFlushed(outcome: TrackerOutcome): void;
}

interface Delivery {
  eventId: string;
  agentId: string;
  deliveredAt: Date;
}

export function createDeliveryRecorder(deps: DeliveryRecorderDeps) {
  let pending = new Map<string, Delivery>();
  let timer: NodeJS.Timeout | undefined;
  let flushing: Promise<void> | undefined;
  let closed = false;

  async function write(batch: Delivery[]): Promise<TrackerOutcome> {
    return inTransaction(deps.pool, async (client) => {
      await lockAgents(client, [...new Set(batch.map((d) => d.agentId))]);
      const { rows } = await client.query<{ event_id: string; agent_id: string; delivered_at: Date }>(
        `INSERT INTO event_deliveries (event_id, agent_id, delivered_at)
         SELECT d.event_id, d.agent_id, d.at
         FROM unnest($1::bigint[], $2::uuid[], $3::timestamptz[]) AS d(event_id, agent_id, at)
         WHERE EXISTS (SELECT 1 FROM push_events e WHERE e.id = d.event_id)
           AND EXISTS (SELECT 1 FROM agents a WHERE a.id = d.agent_id)
         ON CONFLICT (event_id, agent_id) DO NOTHING
         RETURNING event_id, agent_id, delivered_at`,
        [batch.map((d) => d.eventId), batch.map((d) => d.agentId), batch.map((d) => d.deliveredAt)],
      );
      if (rows.length === 0) return { finished: [], statusesQueued: 0, eventIds: new Set<string>() };
      const fresh = rows.map((r) => ({ eventId: r.event_id, agentId: r.agent_id, deliveredAt: r.delivered_at }));
      const events = await readTriggerEvents(client, [...new Set(fresh.map((d) => d.eventId))]);
      const outcome = { finished: [], statusesQueued: 0, eventIds: new Set(fresh.map((d) => d.eventId)) } as TrackerOutcome;
      if (events.size === 0) return outcome;
      const projects = [...new Set([...events.values()].map((e) => e.trigger.projectPath.toLowerCase()))];
      const objects = await candidateObjects(client, [...new Set(fresh.map((d) => d.agentId))], projects);
      if (objects.size === 0) return outcome;
      const tracked = await deps.tracker.onDelivered(client, fresh, events, objects);
      for (const id of outcome.eventIds) tracked.eventIds.add(id);
      return tracked;
    });
  }

  async function flush(): Promise<void> {
    timer = undefined;
    if (pending.size === 0) return;
    const batch = pending;
    pending = new Map();
    try {
      const byAgent = new Map<string, Delivery[]>();
      for (const d of batch.values()) {
        let list = byAgent.get(d.agentId);
        if (!list) byAgent.set(d.agentId, (list = []));
        list.push(d);
      }
      const agents = [...byAgent.keys()];
      for (let i = 0; i < agents.length; i += AGENTS_PER_TRANSACTION) {
        const chunk = agents.slice(i, i + AGENTS_PER_TRANSACTION).flatMap((a) => byAgent.get(a)!);
        const outcome = await write(chunk);
        for (const d of chunk) batch.delete(`${d.eventId}|${d.agentId}`);
        deps.tracker.settle(outcome);
        deps.onFlushed(outcome);
      }
    } catch (err) {
      deps.log.warn({ err: (err as Error).message, deliveries: batch.size }, 'could not record deliveries; will retry');
      // Keep the earliest time of each: put the failed batch back in front of what came since.
      const merged = new Map(batch);
      for (const [key, d] of pending) if (!merged.has(key)) merged.set(key, d);
      pending = merged;
      while (pending.size > MAX_PENDING) pending.delete(pending.keys().next().value!);
      if (!closed) schedule(RETRY_MS);
    }
  }

  function schedule(delayMs: number): void {
    if (timer || closed) return;
    timer = setTimeout(() => {
      flushing = (flushing ?? Promise.resolve()).then(flush).finally(() => {
        if (pending.size > 0) schedule(GATHER_MS);
      });
    }, delayMs);
    timer.unref();
  }

  return {
    /** A push frame for `eventId` was written to a connection of `agentId`. */
    record(eventId: string, agentId: string): void {
      const key = `${eventId}|${agentId}`;
      if (pending.has(key)) return;
      pending.set(key, { eventId, agentId, deliveredAt: new Date() });
      schedule(GATHER_MS);
    },

    /** Writes what is pending now and waits for it (tests, shutdown). */
    async flushNow(): Promise<void> {
      if (timer) clearTimeout(timer);
      timer = undefined;
      flushing = (flushing ?? Promise.resolve()).then(flush);
      await flushing;
    },

    async close(): Promise<void> {
      if (timer) clearTimeout(timer);
      timer = undefined;
      await flushing;
      await flush();
      closed = true;
    },
  };
}

export type DeliveryRecorder = ReturnType<typeof createDeliveryRecorder>;
