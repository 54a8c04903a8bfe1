/**
 * Cluster state as agents report it: `status` frames in (routes/agent-socket.ts), objects in
 * Postgres (object-store.ts), deployments moved in the same transaction (deployments/tracker.ts).
 *
 * Each connection writes one thing at a time; what arrives meanwhile is coalesced
 * (status-intake.ts), so a slow or absent Postgres costs memory bounded by the objects, and the
 * socket never waits. A write that fails is retried while the connection lives (and for a grace
 * period after it closed), then given up: the agent's next full set repairs it.
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
import { markClosed, readObjects, writeStatus, type StoredObject } from './object-store.js';
import { absorb, StatusIntake, type StatusWork } from './status-intake.js';

const RETRY_DELAYS_MS = [250, 500, 1000, 2000, 5000];
/** After its socket closed, a connection's last status is still written for this long. */
const CLOSED_GRACE_MS = 15_000;

export interface ClusterStateDeps {
  pool: pg.Pool;
  presence: Presence;
  tracker: DeploymentTracker;
  metrics: Metrics;
  log: Logger;
  maxObjects: number;
  replicaId: string;
  /** After a status write committed. */
  onWritten(agentId: string, outcome: TrackerOutcome): void;
}

export interface ConnectionHooks {
  /** Sends the agent a protocol error frame. */
  sendError(code: string, message: string): void;
}

/** Errors that retrying will not cure: the agent was deleted (foreign key), the data is refused. */
const isPermanent = (err: unknown) => ['23503', '22P02', '23514'].includes((err as { code?: string }).code ?? '');
const isForeignKey = (err: unknown) => (err as { code?: string }).code === '23503';

/** What an object's deployments hang on: its sourceRef, or a source's project and ref. */
const anchorOf = (o: ReportedObject) => JSON.stringify([o.sourceRef, o.project?.toLowerCase() ?? null, o.ref]);

export function createClusterState(deps: ClusterStateDeps) {
  const { pool, presence, tracker, metrics, log } = deps;
  const writers = new Set<Promise<void>>();

  async function liveConnections(agentId: string): Promise<Set<string> | undefined> {
    try {
      return new Set((await presence.listForAgent(agentId)).map((r) => r.connectionId));
    } catch {
      return undefined;
    }
  }

  class ConnectionStatus {
    private readonly intake = new StatusIntake(deps.maxObjects);
    private queued: StatusWork | undefined;
    private writing: Promise<void> | undefined;
    private closedAt: number | undefined;
    private wrote = false;
    /**
     * What this connection has stored, key → what its deployments hang on (sourceRef, project,
     * ref); undefined until the first write, and again when a write found its rows gone.
     */
    private stored: Map<string, string> | undefined;

    constructor(
      private readonly agentId: string,
      private readonly connectionId: string,
      private readonly hooks: ConnectionHooks,
    ) {}

    /** Takes a status frame; an error is for the caller to send (it counts as a bad frame). */
    receive(frame: StatusFrame): { ok: true } | { ok: false; code: string; message: string } {
      const result = this.intake.receive(frame);
      if (!result.ok) return result;
      if (result.work) {
        this.queued = this.queued ? absorb(this.queued, result.work) : result.work;
        this.kick();
      }
      return { ok: true };
    }

    /** The socket closed: what is queued is still written, then the connection is marked closed. */
    close(): void {
      this.closedAt = Date.now();
      this.kick();
    }

    private kick(): void {
      if (this.writing) return;
      const run = this.drain().finally(() => {
        writers.delete(run);
        this.writing = undefined;
        if (this.queued) this.kick();
      });
      this.writing = run;
      writers.add(run);
    }

    private async drain(): Promise<void> {
      for (let attempt = 0; this.queued; ) {
        const work = this.queued;
        this.queued = undefined;
        try {
          await this.write(work);
          this.wrote = true;
          attempt = 0;
        } catch (err) {
          metrics.statusWriteFailures.inc();
          const where = { agentId: this.agentId, connectionId: this.connectionId, err: (err as Error).message };
          if (isForeignKey(err) && this.stored !== undefined) {
            // Another connection's full set took this one for dead and removed its rows: start over.
            this.stored = undefined;
            this.queued = this.queued ? absorb(work, this.queued) : work;
            continue;
          }
          if (isPermanent(err)) {
            log.warn(where, 'status not stored and not retried');
            continue;
          }
          this.queued = this.queued ? absorb(work, this.queued) : work;
          if (this.closedAt !== undefined && Date.now() - this.closedAt > CLOSED_GRACE_MS) {
            log.warn(where, 'status of a closed connection not stored; giving up');
            this.queued = undefined;
            break;
          }
          const delay = RETRY_DELAYS_MS[Math.min(attempt++, RETRY_DELAYS_MS.length - 1)]!;
          log.warn({ ...where, retryInMs: delay }, 'status write failed; retrying');
          await sleep(delay);
        }
      }
      if (this.closedAt !== undefined && this.wrote) {
        await markClosed(pool, this.connectionId).catch((err: Error) =>
          log.warn({ err: err.message, connectionId: this.connectionId }, 'could not mark a status connection closed; presence still shows it stale'),
        );
      }
    }

    private async write(work: StatusWork): Promise<void> {
      const { agentId, connectionId } = this;
      const stored = this.stored;
      const { written, outcome } = await inTransaction(pool, async (client) => {
        await lockAgents(client, [agentId]);
        // Read under the lock: a connection that wrote before us is registered by now.
        const live = work.full ? await liveConnections(agentId) : undefined;
        const result = await writeStatus(
          client,
          { agentId, connectionId, replicaId: deps.replicaId, live, maxObjects: deps.maxObjects, stored: stored && new Set(stored.keys()) },
          work,
        );
        // Deployments may be missing only for objects new here or pointing elsewhere now.
        const fresh = new Set(result.upserted.filter((o) => stored?.get(objectKey(o)) !== anchorOf(o)).map(objectKey));
        return { written: result, outcome: await tracker.onStatus(client, agentId, result, fresh) };
      });
      const next = new Map(work.full || !stored ? [] : stored);
      for (const key of written.deleted) next.delete(key);
      for (const o of written.upserted) next.set(objectKey(o), anchorOf(o));
      this.stored = next;
      tracker.settle(outcome);
      deps.onWritten(agentId, outcome);
      if (written.refused > 0) {
        metrics.statusObjectsRefused.inc(written.refused);
        if (this.closedAt === undefined) {
          this.hooks.sendError(
            ErrorCode.TooManyObjects,
            `${written.refused} object(s) not stored: at most ${deps.maxObjects} objects per agent (KASGATE_MAX_STATUS_OBJECTS); the agent is shown as truncated`,
          );
        }
      }
    }
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

    /** Waits (a while) for the writes in flight; for shutdown. */
    async close(timeoutMs = 5000): Promise<void> {
      await Promise.race([Promise.allSettled(writers), sleep(timeoutMs)]);
    },
  };
}

export type ClusterState = ReturnType<typeof createClusterState>;
export type { StoredObject } from './object-store.js';
