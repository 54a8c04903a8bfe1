/**
 * The periodic chores of deployments, on every replica (each is safe run concurrently): time
 * out what got no outcome within KASGATE_DEPLOYMENT_TIMEOUT, and drop the deliveries and
 * deployments of events retention removed, commit statuses done long ago, and connections that
 * closed with nothing left to show.
 */
import type pg from 'pg';
import type { Logger } from 'pino';
import type { DeploymentTracker, TrackerOutcome } from './tracker.js';

/** The housekeeping runs once every this many sweeps. */
const PRUNE_EVERY = 100;

export function startDeploymentSweeper(deps: {
  pool: pg.Pool;
  tracker: DeploymentTracker;
  timeoutMs: number;
  /** Done commit statuses are kept this long (the event log's retention). */
  keepMs: number;
  log: Logger;
  onSwept(outcome: TrackerOutcome): void;
}) {
  // A quarter of the timeout, between 250 ms (short timeouts in tests) and 30 s.
  const everyMs = Math.min(30_000, Math.max(250, Math.floor(deps.timeoutMs / 4)));
  let running: Promise<void> | undefined;
  let sweeps = 0;

  /** Hourly or so, so a scan of the queue is fine (no index is kept up for it on every status). */
  async function prune(): Promise<void> {
    // Deliveries and deployments of events that retention removed (no foreign key does it: see the migration).
    for (const table of ['event_deliveries', 'deployments']) {
      await deps.pool.query(`DELETE FROM ${table} WHERE event_id <= (SELECT pruned_through FROM event_log_state)`);
    }
    await deps.pool.query(
      `DELETE FROM commit_status_outbox WHERE (posted_at IS NOT NULL OR gave_up_at IS NOT NULL)
         AND created_at < now() - make_interval(secs => $1::double precision / 1000)`,
      [deps.keepMs],
    );
    await deps.pool.query(
      `DELETE FROM cluster_connections c WHERE c.closed_at IS NOT NULL
         AND NOT EXISTS (SELECT 1 FROM cluster_objects o WHERE o.connection_id = c.connection_id)`,
    );
  }

  async function sweep(): Promise<void> {
    const outcome = await deps.tracker.sweep(deps.pool);
    deps.tracker.settle(outcome);
    if (outcome.finished.length > 0) {
      deps.log.info({ timedOut: outcome.finished.length }, 'deployments timed out');
      deps.onSwept(outcome);
    }
    if (++sweeps % PRUNE_EVERY === 0) await prune();
  }

  const run = () => {
    running ??= sweep()
      .catch((err: Error) => deps.log.warn({ err: err.message }, 'deployment sweep failed; the next one retries'))
      .finally(() => (running = undefined));
    return running;
  };
  const timer = setInterval(run, everyMs);
  timer.unref();

  return {
    runNow: run,
    async stop(): Promise<void> {
      clearInterval(timer);
      await running;
    },
  };
}
