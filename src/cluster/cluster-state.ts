/**
 * Cluster state as agents report it: `status` frames in (routes/agent-socket.ts), objects in
 * Postgres (object-store.ts), deployments moved in the same transaction (deployments/tracker.ts).
 *
 * All of an agent's writes go through one queue: the deliveries the hub and replay record
 * (deployments/deliveries.ts) and its connections' status work. A writer takes the queues of up
 * to BATCH agents into one transaction: their locks in one order, the deliveries first (so the
 * deployments they create are there), then each connection's objects, then one deployment
 * evaluation for all. Writers take disjoint agents, so they never wait for each other's locks,
 * and a push fanned out to a thousand agents that all report at once costs a handful of
 * transactions, not a thousand. What arrives for an agent while it is in a batch waits for a
 * later one (status work coalesced: status-intake.ts), so memory stays bounded and neither the
 * hub nor a socket ever waits.
 *
 * A batch that fails is retried agent by agent, so one agent's bad luck (deleted meanwhile)
 * cannot hold the others back. An agent whose write fails is retried with backoff while its
 * connections live (status work: and for a grace period after they closed), then given up:
 * the agent's next full set repairs its objects.
 */
import type pg from 'pg';
import type { Logger } from 'pino';
import { inTransaction, lockAgents } from '../db/transaction.js';
import type { DeploymentTracker, TrackerOutcome } from '../deployments/tracker.js';
import type { Presence } from '../fanout/presence.js';
import type { Metrics } from '../metrics.js';
import { ErrorCode, type ReportedObject, type StatusFrame } from '../protocol/kasgate-v1.js';
import { objectKey } from '../deployments/matching.js';
import { sleep } from '../gitlab/api/rate-limiter.js';
import { writeDeliveries, type Delivery, type DeliveryRecorder } from '../deployments/deliveries.js';
import { markClosed, readObjects, upsertKnown, writeStatus, type StoredObject, type WriteResult } from './object-store.js';
import { absorb, DELETED, StatusIntake, type StatusWork } from './status-intake.js';

const RETRY_DELAYS_MS = [250, 500, 1000, 2000, 5000];
/** After its socket closed, a connection's last status is still written for this long. */
const CLOSED_GRACE_MS = 15_000;
/** Agents per transaction (each agent's lock is a slot of Postgres's shared lock table). */
const BATCH = 100;
/** Beyond this many unwritten deliveries (Postgres away for long), the oldest are dropped. */
const MAX_PENDING_DELIVERIES = 200_000;
/** Transactions in flight at once (of the background pool's connections). */
const WRITERS = 2;

export interface ClusterStateDeps {
  pool: pg.Pool;
  presence: Presence;
  tracker: DeploymentTracker;
  metrics: Metrics;
  log: Logger;
  maxObjects: number;
  replicaId: string;
  /** After a batch of status writes committed: the agents whose objects changed, and what moved. */
  onWritten(agentIds: string[], outcome: TrackerOutcome): void;
}

export interface ConnectionHooks {
  /** Sends the agent a protocol error frame. */
  sendError(code: string, message: string): void;
}

/** Errors that retrying will not cure: the agent was deleted (foreign key), the data is refused. */
const isPermanent = (err: unknown) => ['23503', '22P02', '23514'].includes((err as { code?: string }).code ?? '');
const isForeignKey = (err: unknown) => (err as { code?: string }).code === '23503';

/** Changes to objects the connection has stored already: nothing to delete, count or flag. */
function isSimple(work: StatusWork, stored: Map<string, string> | undefined): boolean {
  if (work.full || !stored || work.agentTruncated !== undefined || work.overflow > 0) return false;
  for (const [key, entry] of work.objects) if (entry === DELETED || !stored.has(key)) return false;
  return true;
}

/** What an object's deployments hang on: its sourceRef, or a source's project and ref. */
const anchorOf = (o: ReportedObject) => JSON.stringify([o.sourceRef, o.project?.toLowerCase() ?? null, o.ref]);

export function createClusterState(deps: ClusterStateDeps) {
  const { pool, presence, tracker, metrics, log } = deps;
  /** One per agent with work queued or in flight. */
  interface AgentQueue {
    agentId: string;
    connections: Set<ConnectionStatus>;
    /** event id → first delivered at. */
    deliveries: Map<string, Date>;
    inFlight: boolean;
    attempt: number;
  }
  const queues = new Map<string, AgentQueue>();
  /** Queues with work and none in flight, in arrival order. */
  const ready = new Set<AgentQueue>();
  let pendingDeliveries = 0;
  let writers = 0;
  let idle: (() => void)[] = [];

  function queueOf(agentId: string): AgentQueue {
    let queue = queues.get(agentId);
    if (!queue) queues.set(agentId, (queue = { agentId, connections: new Set(), deliveries: new Map(), inFlight: false, attempt: 0 }));
    return queue;
  }

  async function liveConnections(agentId: string): Promise<Set<string> | undefined> {
    try {
      return new Set((await presence.listForAgent(agentId)).map((r) => r.connectionId));
    } catch {
      return undefined;
    }
  }

  class ConnectionStatus {
    private readonly intake = new StatusIntake(deps.maxObjects);
    /** Work not yet taken by a batch. */
    queued: StatusWork | undefined;
    closedAt: number | undefined;
    private wrote = false;
    /**
     * What this connection has stored, key → what its deployments hang on (sourceRef, project,
     * ref); undefined until the first write, and again when a write found its rows gone.
     */
    stored: Map<string, string> | undefined;

    constructor(
      readonly agentId: string,
      readonly connectionId: string,
      private readonly hooks: ConnectionHooks,
    ) {}

    /** Takes a status frame; an error is for the caller to send (it counts as a bad frame). */
    receive(frame: StatusFrame): { ok: true } | { ok: false; code: string; message: string } {
      const result = this.intake.receive(frame);
      if (!result.ok) return result;
      if (result.work) {
        this.queued = this.queued ? absorb(this.queued, result.work) : result.work;
        const queue = queueOf(this.agentId);
        queue.connections.add(this);
        schedule(queue);
      }
      return { ok: true };
    }

    /** The socket closed: what is queued is still written, then the connection is marked closed. */
    close(): void {
      this.closedAt = Date.now();
      const queue = queues.get(this.agentId);
      if (!queue?.connections.has(this)) this.finish();
    }

    /** Its work committed. */
    written(work: StatusWork, result: WriteResult): void {
      const next = new Map(work.full || !this.stored ? [] : this.stored);
      for (const key of result.deleted) next.delete(key);
      for (const o of result.upserted) next.set(objectKey(o), anchorOf(o));
      this.stored = next;
      this.wrote = true;
      if (result.refused > 0) {
        metrics.statusObjectsRefused.inc(result.refused);
        if (this.closedAt === undefined) {
          this.hooks.sendError(
            ErrorCode.TooManyObjects,
            `${result.refused} object(s) not stored: at most ${deps.maxObjects} objects per agent (KASGATE_MAX_STATUS_OBJECTS); the agent is shown as truncated`,
          );
        }
      }
    }

    /** Its work did not commit: keep it for the next attempt unless that is pointless. Returns whether it is kept. */
    failed(work: StatusWork, err: unknown): boolean {
      const where = { agentId: this.agentId, connectionId: this.connectionId, err: (err as Error).message };
      this.queued = this.queued ? absorb(work, this.queued) : work;
      if (isForeignKey(err) && this.stored !== undefined) {
        // Another connection's full set took this one for dead and removed its rows: start over.
        this.stored = undefined;
        return true;
      }
      if (isPermanent(err)) {
        log.warn(where, 'status not stored and not retried');
      } else if (this.closedAt !== undefined && Date.now() - this.closedAt > CLOSED_GRACE_MS) {
        log.warn(where, 'status of a closed connection not stored; giving up');
      } else {
        return true;
      }
      this.queued = undefined;
      return false;
    }

    finish(): void {
      if (this.closedAt === undefined || !this.wrote) return;
      markClosed(pool, this.connectionId).catch((err: Error) =>
        log.warn({ err: err.message, connectionId: this.connectionId }, 'could not mark a status connection closed; presence still shows it stale'),
      );
    }
  }

  function schedule(queue: AgentQueue): void {
    if (queue.inFlight) return;
    ready.add(queue);
    if (writers < WRITERS) {
      writers++;
      // After the caller's synchronous work (a fan-out records every delivery first).
      setImmediate(() => void writeLoop());
    }
  }

  interface Taken {
    queue: AgentQueue;
    deliveries: Delivery[];
    statuses: { connection: ConnectionStatus; work: StatusWork }[];
  }

  function take(queue: AgentQueue): Taken {
    ready.delete(queue);
    queue.inFlight = true;
    const deliveries = [...queue.deliveries].map(([eventId, deliveredAt]) => ({ eventId, agentId: queue.agentId, deliveredAt }));
    pendingDeliveries -= deliveries.length;
    queue.deliveries = new Map();
    const statuses = [...queue.connections].filter((c) => c.queued).map((connection) => ({ connection, work: connection.queued! }));
    for (const { connection } of statuses) connection.queued = undefined;
    queue.connections = new Set();
    return { queue, deliveries, statuses };
  }

  /** After an attempt: what committed, or what to keep for the next one. */
  function settle(taken: Taken, result: { written: WriteResult[] } | { error: unknown }): void {
    const { queue } = taken;
    let retry = false;
    if ('written' in result) {
      taken.statuses.forEach(({ connection, work }, i) => connection.written(work, result.written[i]!));
      queue.attempt = 0;
    } else {
      metrics.statusWriteFailures.inc();
      const err = result.error;
      const permanent = isPermanent(err) && !isForeignKey(err);
      for (const { connection, work } of taken.statuses) {
        if (connection.failed(work, err)) {
          queue.connections.add(connection);
          retry = true;
        }
      }
      if (!permanent && taken.deliveries.length > 0) {
        for (const d of taken.deliveries) if (!queue.deliveries.has(d.eventId)) queue.deliveries.set(d.eventId, d.deliveredAt);
        pendingDeliveries += taken.deliveries.length;
        retry = true;
      }
      log.warn({ agentId: queue.agentId, err: (err as Error).message, retry }, 'agent writes failed');
    }
    for (const { connection } of taken.statuses) if (!queue.connections.has(connection)) connection.finish();
    const delay = retry ? RETRY_DELAYS_MS[Math.min(queue.attempt++, RETRY_DELAYS_MS.length - 1)]! : 0;
    const release = () => {
      queue.inFlight = false;
      if (queue.deliveries.size > 0 || queue.connections.size > 0) schedule(queue);
      else queues.delete(queue.agentId);
    };
    if (delay > 0) setTimeout(release, delay).unref();
    else release();
  }

  async function writeLoop(): Promise<void> {
    try {
      while (ready.size > 0) {
        const batch: Taken[] = [];
        for (const queue of ready) {
          batch.push(take(queue));
          if (batch.length >= BATCH) break;
        }
        try {
          const written = await writeBatch(batch);
          batch.forEach((taken, i) => settle(taken, { written: written[i]! }));
        } catch (err) {
          if (batch.length === 1) settle(batch[0]!, { error: err });
          else {
            // Find the culprit: each agent on its own.
            for (const taken of batch) {
              await writeBatch([taken]).then(
                ([written]) => settle(taken, { written: written! }),
                (single: unknown) => settle(taken, { error: single }),
              );
            }
          }
        }
      }
    } finally {
      writers--;
      if (writers === 0) {
        for (const wake of idle) wake();
        idle = [];
      }
    }
  }

  /** One transaction for the batch; per agent, the status writes' results in order. */
  async function writeBatch(batch: Taken[]): Promise<WriteResult[][]> {
    const timer = metrics.statusWriteDuration.startTimer();
    const { results, outcome } = await inTransaction(pool, async (client) => {
      await lockAgents(client, batch.map((b) => b.queue.agentId));
      const delivered = await writeDeliveries(client, tracker, batch.flatMap((b) => b.deliveries));
      const perAgent: WriteResult[][] = [];
      const changes: { agentId: string; upserted: ReportedObject[]; fresh: Set<string> }[] = [];
      const simple: { agentId: string; connectionId: string; objects: ReportedObject[] }[] = [];
      for (const { queue, statuses } of batch) {
        const written: WriteResult[] = [];
        for (const { connection, work } of statuses) {
          const { agentId, connectionId, stored } = connection;
          let result: WriteResult;
          if (isSimple(work, stored)) {
            // Written below, with the other simple ones, in one statement.
            const objects = [...work.objects.values()] as ReportedObject[];
            simple.push({ agentId, connectionId, objects });
            result = { refused: 0, upserted: objects, deleted: [] };
          } else {
            // Read under the lock: a connection that wrote before us is registered by now.
            const live = work.full ? await liveConnections(agentId) : undefined;
            result = await writeStatus(
              client,
              { agentId, connectionId, replicaId: deps.replicaId, live, maxObjects: deps.maxObjects, stored: stored && new Set(stored.keys()) },
              work,
            );
          }
          written.push(result);
          // Deployments may be missing only for objects new here or pointing elsewhere now.
          const fresh = new Set(result.upserted.filter((o) => stored?.get(objectKey(o)) !== anchorOf(o)).map(objectKey));
          changes.push({ agentId: queue.agentId, upserted: result.upserted, fresh });
        }
        perAgent.push(written);
      }
      await upsertKnown(client, simple);
      const moved = await tracker.onStatus(client, changes);
      for (const id of delivered.eventIds) moved.eventIds.add(id);
      moved.finished.push(...delivered.finished);
      moved.statusesQueued += delivered.statusesQueued;
      return { results: perAgent, outcome: moved };
    });
    timer();
    tracker.settle(outcome);
    deps.onWritten(
      batch.filter((b) => b.statuses.length > 0).map((b) => b.queue.agentId),
      outcome,
    );
    return results;
  }

  const deliveries: DeliveryRecorder = {
    record(eventId, agentId) {
      const queue = queueOf(agentId);
      if (queue.deliveries.has(eventId)) return;
      if (pendingDeliveries >= MAX_PENDING_DELIVERIES) {
        log.warn({ agentId, eventId }, 'too many deliveries waiting for Postgres; this one is not recorded');
        return;
      }
      queue.deliveries.set(eventId, new Date());
      pendingDeliveries++;
      schedule(queue);
    },
  };

  return {
    /** The status side of one agent connection. */
    connection(agentId: string, connectionId: string, hooks: ConnectionHooks): ConnectionStatus {
      return new ConnectionStatus(agentId, connectionId, hooks);
    },

    /** The agent's objects: the union over its connections, stale where no live connection reports them. */
    async objectsOf(agentId: string): Promise<{ objects: StoredObject[]; truncated: boolean }> {
      return readObjects(pool, agentId, await liveConnections(agentId));
    },

    /** Where the hub and replay record deliveries. */
    deliveries,

    /** Waits (a while) for the writes in flight and queued; for shutdown. */
    async close(timeoutMs = 5000): Promise<void> {
      if (writers === 0) return;
      await Promise.race([new Promise<void>((resolve) => idle.push(resolve)), sleep(timeoutMs)]);
    },
  };
}

export type ClusterState = ReturnType<typeof createClusterState>;
export type { StoredObject } from './object-store.js';
