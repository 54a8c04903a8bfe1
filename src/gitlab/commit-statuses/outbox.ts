/**
 * Commit statuses on GitLab, from a queue in Postgres (migration 1764100002000).
 *
 * A status is written to the queue in the same transaction as the deployment state it reports,
 * so none is lost and none is written twice: the queue's key (sha, name, state) makes "at most
 * one post per sha, name and state". Any replica's worker claims due statuses with a lease
 * (FOR UPDATE SKIP LOCKED, then `leased_until`), posts them, and marks them posted; a replica
 * that dies leaves its leases to expire, and another replica (or itself, restarted) posts them.
 * For one commit and name the states go out in the order they were queued (running before
 * success), because a later one is not claimed while an earlier one is owed.
 *
 * GitLab's API (gitlabhq doc/api/commits.md, "Set the pipeline status of a commit"):
 * `POST /projects/:id/statuses/:sha` with `state` (pending, running, success, failed, canceled,
 * skipped), `ref`, `name`, `target_url` and `description` (each at most 255 characters). Its
 * service (app/services/ci/create_commit_status_service.rb) answers 404 for an unknown commit or
 * one on no branch, 403 without the right to update pipelines, 400 for a transition the state
 * machine refuses (running → running), and 409 when another update of the same commit status
 * holds its lock: that one is retried like 429 and 5xx. Other 4xx are logged once, counted and
 * never retried.
 */
import type pg from 'pg';
import type { Logger } from 'pino';
import type { Metrics } from '../../metrics.js';
import { backoffMs, type GitLabApi } from '../api/client.js';
import { isGitLabApiError, isTransientStatus } from '../api/errors.js';
import { sleep } from '../api/rate-limiter.js';
import { createNap } from '../../lib/nap.js';

export type CommitStatusState = 'running' | 'success' | 'failed' | 'canceled';

export interface StatusIntent {
  deploymentId: string;
  eventId: string;
  /** GitLab's :id, a numeric id or a project path. */
  project: string;
  sha: string;
  name: string;
  state: CommitStatusState;
  ref: string | null;
  targetUrl: string | null;
  description: string;
}

/** Queues statuses in the caller's transaction; returns how many were new. */
export async function enqueueStatuses(client: pg.PoolClient, intents: StatusIntent[]): Promise<number> {
  if (intents.length === 0) return 0;
  const rows = intents.map((i) => ({
    deployment_id: i.deploymentId,
    event_id: i.eventId,
    project: i.project,
    sha: i.sha,
    name: i.name,
    state: i.state,
    ref: i.ref,
    target_url: i.targetUrl,
    description: i.description,
  }));
  const { rowCount } = await client.query(
    `INSERT INTO commit_status_outbox (deployment_id, event_id, project, sha, name, state, ref, target_url, description)
     SELECT r.deployment_id, r.event_id, r.project, r.sha, r.name, r.state, r.ref, r.target_url, r.description
     FROM jsonb_to_recordset($1::jsonb) AS r(deployment_id bigint, event_id bigint, project text, sha text, name text,
                                             state text, ref text, target_url text, description text)
     ON CONFLICT (sha, name, state) DO NOTHING`,
    [JSON.stringify(rows)],
  );
  return rowCount ?? 0;
}

interface OutboxRow {
  id: string;
  project: string;
  sha: string;
  name: string;
  state: CommitStatusState;
  ref: string | null;
  target_url: string | null;
  description: string | null;
  attempts: number;
  created_at: Date;
}

export interface StatusWorkerOptions {
  pool: pg.Pool;
  api: GitLabApi;
  replicaId: string;
  /** How long a claim holds a status: longer than one request can take. */
  leaseMs: number;
  /** Owed statuses older than this are dropped (the event is gone from the log by then). */
  expireAfterMs: number;
  metrics: Metrics;
  log: Logger;
  pollMs?: number;
  /** Posts in flight; a claim takes only what fits beside them. */
  concurrency?: number;
}

/** 429 and 5xx as always, and 409: GitLab's lock on the commit status was taken. */
const retryStatus = (status: number) => isTransientStatus(status) || status === 409;
/** Between tries of one status when GitLab gave no Retry-After: 1 s doubling, at most 5 minutes. */
const retryDelayMs = (attempts: number) => backoffMs(attempts, 1000, 300_000);

export function startStatusWorker(options: StatusWorkerOptions) {
  const { pool, replicaId, metrics, log } = options;
  const pollMs = options.pollMs ?? 500;
  const concurrency = options.concurrency ?? 8;
  // One attempt per claim: the queue does the retrying, durably, and a lease stays short.
  const api = options.api.withPolicy({ maxAttempts: 1, retryStatus });
  const state = { stopped: false };
  const nap = createNap();
  const stopping = new AbortController();

  async function claim(limit: number): Promise<OutboxRow[]> {
    const { rows } = await pool.query<OutboxRow>(
      `WITH due AS (
         SELECT o.id FROM commit_status_outbox o
         WHERE o.posted_at IS NULL AND o.gave_up_at IS NULL AND o.next_attempt_at <= now()
           AND (o.leased_until IS NULL OR o.leased_until < now())
           AND NOT EXISTS (SELECT 1 FROM commit_status_outbox p
                           WHERE p.sha = o.sha AND p.name = o.name AND p.id < o.id
                             AND p.posted_at IS NULL AND p.gave_up_at IS NULL)
         ORDER BY o.next_attempt_at, o.id
         LIMIT $1
         FOR UPDATE SKIP LOCKED
       )
       UPDATE commit_status_outbox o
       SET leased_until = now() + make_interval(secs => $2::double precision / 1000), leased_by = $3, attempts = o.attempts + 1
       FROM due WHERE o.id = due.id
       RETURNING o.id, o.project, o.sha, o.name, o.state, o.ref, o.target_url, o.description, o.attempts, o.created_at`,
      [limit, options.leaseMs, replicaId],
    );
    return rows;
  }

  /** Updates a claimed row if this replica still holds it. */
  const settle = (row: OutboxRow, set: string, params: unknown[]) =>
    pool.query(`UPDATE commit_status_outbox SET ${set}, leased_until = NULL WHERE id = $1 AND leased_by = $2`, [row.id, replicaId, ...params]);

  /** Posts one claimed status; true when GitLab took it (marked posted by the caller, with the rest of the batch). */
  async function post(row: OutboxRow): Promise<boolean> {
    if (Date.now() - row.created_at.getTime() > options.expireAfterMs) {
      metrics.commitStatuses.inc({ state: row.state, outcome: 'expired' });
      log.warn({ project: row.project, sha: row.sha, name: row.name, state: row.state }, 'commit status owed too long; dropped');
      await settle(row, `gave_up_at = now(), last_error = 'expired'`, []);
      return false;
    }
    try {
      await api.commits.editStatus(row.project, row.sha, row.state, {
        name: row.name,
        ...(row.ref ? { ref: row.ref } : {}),
        ...(row.target_url ? { targetUrl: row.target_url } : {}),
        ...(row.description ? { description: row.description } : {}),
      });
      metrics.commitStatuses.inc({ state: row.state, outcome: 'posted' });
      return true;
    } catch (err) {
      const message = (err as Error).message;
      if (isGitLabApiError(err) && !err.retryable) {
        // Never again: GitLab refused this one for what it is.
        metrics.commitStatuses.inc({ state: row.state, outcome: 'rejected' });
        log.warn({ project: row.project, sha: row.sha, name: row.name, state: row.state, status: err.status, err: message }, 'GitLab refused a commit status; not retrying it');
        await settle(row, 'gave_up_at = now(), last_error = $3', [message]);
        return false;
      }
      if (stopping.signal.aborted) {
        await settle(row, 'last_error = $3', [message]);
        return false;
      }
      const delay = (isGitLabApiError(err) ? err.retryAfterMs : undefined) ?? retryDelayMs(row.attempts);
      metrics.commitStatuses.inc({ state: row.state, outcome: 'retried' });
      const entry = { project: row.project, sha: row.sha, name: row.name, state: row.state, attempts: row.attempts, retryInMs: Math.round(delay), err: message };
      if (row.attempts === 1 || row.attempts % 10 === 0) log.warn(entry, 'commit status not posted; will retry');
      else log.debug(entry, 'commit status not posted; will retry');
      await settle(row, 'next_attempt_at = now() + make_interval(secs => $3::double precision / 1000), last_error = $4', [delay, message]);
      return false;
    }
  }

  /**
   * Marks statuses posted as soon as GitLab took them, with one UPDATE in flight taking whatever
   * completed meanwhile: the window in which a replica that dies has posted a status without
   * recording it (so that it is posted again) stays one round trip.
   */
  let postedIds: string[] = [];
  let marking: Promise<void> | undefined;
  function markPosted(id: string): Promise<void> {
    postedIds.push(id);
    marking ??= (async () => {
      while (postedIds.length > 0) {
        const ids = postedIds;
        postedIds = [];
        await pool
          .query(
            'UPDATE commit_status_outbox SET posted_at = now(), leased_until = NULL, last_error = NULL WHERE id = ANY($1::bigint[]) AND leased_by = $2',
            [ids, replicaId],
          )
          .catch((err: Error) => log.warn({ err: err.message, statuses: ids.length }, 'could not mark commit statuses posted; they will be posted again'));
      }
    })().finally(() => (marking = undefined));
    return marking;
  }

  /**
   * Posts in flight. A claim takes only what fits beside them, and each post that ends makes
   * room at once: one request GitLab sits on holds one slot until its timeout, not the queue.
   */
  const inFlight = new Set<Promise<void>>();

  /** Claims what fits and starts posting it; returns how many rows it claimed, and how many it could have. */
  async function runOnce(): Promise<{ claimed: number; room: number }> {
    const room = concurrency - inFlight.size;
    if (room <= 0) return { claimed: 0, room };
    const rows = await claim(room);
    for (const row of rows) {
      const posting: Promise<void> = post(row)
        .catch((err: Error) => {
          log.warn({ err: err.message, id: row.id }, 'could not settle a commit status; its lease will expire');
          return false;
        })
        .then((ok) => {
          if (ok) void markPosted(row.id);
        })
        .finally(() => {
          inFlight.delete(posting);
          nap.wake();
        });
      inFlight.add(posting);
    }
    return { claimed: rows.length, room };
  }

  async function countOwed(): Promise<void> {
    const { rows } = await pool.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM commit_status_outbox WHERE posted_at IS NULL AND gave_up_at IS NULL',
    );
    metrics.commitStatusesOwed.set(rows[0]?.n ?? 0);
  }

  const loop = (async () => {
    let idleRounds = 0;
    while (!state.stopped) {
      let round = { claimed: 0, room: 0 };
      try {
        round = await runOnce();
        if (round.claimed === 0 && inFlight.size === 0 && idleRounds++ % 20 === 0) await countOwed();
      } catch (err) {
        log.warn({ err: (err as Error).message }, 'commit status queue unavailable; retrying');
      }
      if (state.stopped) break;
      // Full room taken: there may be more. Otherwise wait for the poll, a nudge, or a post that ends.
      if (round.room > 0 && round.claimed === round.room) continue;
      await nap.sleep(pollMs);
    }
  })();

  return {
    /** New statuses were queued here: look now rather than at the next poll. */
    nudge(): void {
      nap.wake();
    },
    async stop(): Promise<void> {
      state.stopped = true;
      stopping.abort();
      // Requests in flight are cut: a status they carried is posted again by whoever claims it next.
      api.close();
      nap.wake();
      await Promise.race([Promise.all([loop, ...inFlight]).then(() => marking), sleep(2000)]);
      // Hand what this replica holds to the others now, not when the leases run out.
      await pool
        .query('UPDATE commit_status_outbox SET leased_until = NULL WHERE leased_by = $1 AND posted_at IS NULL AND gave_up_at IS NULL', [replicaId])
        .catch(() => {});
    },
  };
}

export type StatusWorker = ReturnType<typeof startStatusWorker>;
