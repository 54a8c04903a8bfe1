/**
 * Cluster state as agents report it: `status` frames in (routes/agent-connection.ts), objects in
 * Postgres (object-store.ts), deployments moved in the same transaction (deployments/tracker.ts).
 *
 * All of an agent's status work goes through one queue. A writer takes the queues of up to
 * BATCH agents into one transaction: their locks in one order, each connection's objects, then
 * one deployment evaluation for all. Writers take disjoint agents, so they never wait for each
 * other's locks, and a thousand agents that all report at once cost a handful of transactions,
 * not a thousand. What arrives for an agent while it is in a batch waits for a later one
 * (coalesced: status-intake.ts), so memory stays bounded and a socket never waits.
 *
 * Deliveries are written beside this, without the agents' locks (deployments/deliveries.ts). So
 * objects new to a connection are checked once more after their commit (`recheckFresh`): a
 * delivery that committed while they were being written finds its deployments then.
 *
 * A batch that fails is retried agent by agent, so one agent's bad luck (deleted meanwhile)
 * cannot hold the others back. An agent whose write fails is retried with backoff while its
 * connections live (status work: and for a grace period after they closed), then given up:
 * the agent's next full set repairs its objects.
 */
import type pg from 'pg';
import type { Logger } from 'pino';
import { inTransaction, isPermanent, lockAgents } from '../db/transaction.js';
import type { DeploymentTracker, TrackerOutcome } from '../deployments/tracker.js';
import type { Presence } from '../fanout/presence.js';
import type { Metrics } from '../metrics.js';
import { ErrorCode, type ReportedObject, type StatusFrame } from '../protocol/kasgate-v1.js';
import { objectKey } from '../deployments/matching.js';
import { sleep } from '../gitlab/api/rate-limiter.js';
import { markClosed, readObjects, upsertKnown, writeStatus, type StoredObject, type WriteResult } from './object-store.js';
import { absorb, DELETED, StatusIntake, type StatusWork } from './status-intake.js';
import { BOUNDED_RETRIES, retryDelayMs } from '../lib/retry-delay.js';

/** After its socket closed, a connection's last status is still written for this long. */
const CLOSED_GRACE_MS = 15_000;
/** Agents per transaction (each agent's lock is a slot of Postgres's shared lock table). */
const BATCH = 100;
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
    inFlight: boolean;
    attempt: number;
  }
  const queues = new Map<string, AgentQueue>();
  /** Queues with work and none in flight, in arrival order. */
  const ready = new Set<AgentQueue>();
  let writers = 0;
  let idle: (() => void)[] = [];
  const rechecks = new Set<Promise<void>>();

  function queueOf(agentId: string): AgentQueue {
    let queue = queues.get(agentId);
    if (!queue) queues.set(agentId, (queue = { agentId, connections: new Set(), inFlight: false, attempt: 0 }));
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
      // After the caller's synchronous work.
      setImmediate(() => void writeLoop());
    }
  }

  interface Taken {
    queue: AgentQueue;
    statuses: { connection: ConnectionStatus; work: StatusWork }[];
  }

  function take(queue: AgentQueue): Taken {
    ready.delete(queue);
    queue.inFlight = true;
    const statuses = [...queue.connections].filter((c) => c.queued).map((connection) => ({ connection, work: connection.queued! }));
    for (const { connection } of statuses) connection.queued = undefined;
    queue.connections = new Set();
    return { queue, statuses };
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
      for (const { connection, work } of taken.statuses) {
        if (connection.failed(work, err)) {
          queue.connections.add(connection);
          retry = true;
        }
      }
      log.warn({ agentId: queue.agentId, err: (err as Error).message, retry }, 'agent writes failed');
    }
    for (const { connection } of taken.statuses) if (!queue.connections.has(connection)) connection.finish();
    const delay = retry ? retryDelayMs(queue.attempt++) : 0;
    const release = () => {
      queue.inFlight = false;
      if (queue.connections.size > 0) schedule(queue);
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
    const { results, outcome, withFresh } = await inTransaction(pool, async (client) => {
      await lockAgents(client, batch.map((b) => b.queue.agentId));
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
      return { results: perAgent, outcome: moved, withFresh: changes.filter((c) => c.fresh.size > 0) };
    });
    timer();
    tracker.settle(outcome);
    deps.onWritten(
      batch.filter((b) => b.statuses.length > 0).map((b) => b.queue.agentId),
      outcome,
    );
    if (withFresh.length > 0) recheckFresh(withFresh);
    return results;
  }

  /**
   * After objects new to their connection committed: their deployments once more, under the
   * agents' locks. A delivery written while they were (deliveries.ts takes no lock) saw neither
   * them nor was seen by them; now it is committed, so this finds it.
   */
  function recheckFresh(changes: { agentId: string; upserted: ReportedObject[]; fresh: Set<string> }[], attempt = 0): void {
    const only = changes.map((c) => ({ ...c, upserted: c.upserted.filter((o) => c.fresh.has(objectKey(o))) }));
    const done = inTransaction(pool, async (client) => {
      await lockAgents(client, only.map((c) => c.agentId));
      return tracker.onStatus(client, only);
    }).then(
      (outcome) => {
        tracker.settle(outcome);
        deps.onWritten([], outcome);
      },
      (err: unknown) => {
        const retry = attempt < BOUNDED_RETRIES && !isPermanent(err);
        log.warn({ err: (err as Error).message, agents: only.length, retry }, 'deployments of new objects not checked again');
        if (retry) setTimeout(() => recheckFresh(only, attempt + 1), retryDelayMs(attempt)).unref();
      },
    );
    rechecks.add(done);
    void done.finally(() => rechecks.delete(done));
  }

  return {
    /** The status side of one agent connection. */
    connection(agentId: string, connectionId: string, hooks: ConnectionHooks): ConnectionStatus {
      return new ConnectionStatus(agentId, connectionId, hooks);
    },

    /** The agent's objects: the union over its connections, stale where no live connection reports them. */
    async objectsOf(agentId: string): Promise<{ objects: StoredObject[]; truncated: boolean }> {
      return readObjects(pool, agentId, await liveConnections(agentId));
    },

    /** Waits (a while) for the writes in flight and queued; for shutdown. */
    async close(timeoutMs = 5000): Promise<void> {
      const writing = writers === 0 ? Promise.resolve() : new Promise<void>((resolve) => idle.push(resolve));
      await Promise.race([writing.then(() => Promise.allSettled(rechecks)), sleep(timeoutMs)]);
    },
  };
}

export type ClusterState = ReturnType<typeof createClusterState>;
export type { StoredObject } from './object-store.js';
