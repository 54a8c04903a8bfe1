/**
 * Retention: deletes events older than the window, a bounded batch per statement, skipping rows
 * other replicas are deleting, and only up to the log's horizon (pruned_through never passes an
 * event that may still commit). It never takes the append's draw lock but for the horizon's instant.
 */
import type pg from 'pg';
import type { Logger } from 'pino';

const BATCH = 5000;

export async function pruneEvents(pool: pg.Pool, retentionMs: number): Promise<number> {
  let total = 0;
  for (;;) {
    const { rows } = await pool.query<{ deleted: string; max_id: string | null }>(
      `WITH doomed AS (
         SELECT id FROM push_events WHERE received_at < now() - make_interval(secs => $1::double precision / 1000)
           AND id <= (SELECT push_events_horizon())
         ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED
       ), gone AS (
         DELETE FROM push_events e USING doomed WHERE e.id = doomed.id RETURNING e.id
       ), noted AS (
         UPDATE event_log_state SET pruned_through = GREATEST(pruned_through, (SELECT max(id) FROM gone))
         WHERE EXISTS (SELECT 1 FROM gone) RETURNING 1
       )
       SELECT count(*) AS deleted, max(id) AS max_id FROM gone`,
      [retentionMs, BATCH],
    );
    const deleted = Number(rows[0]?.deleted ?? 0);
    total += deleted;
    if (deleted < BATCH) return total;
  }
}

export function startRetention(pool: pg.Pool, retentionMs: number, log: Logger, everyMs = 60_000) {
  let running: Promise<void> | undefined;
  const run = () => {
    running ??= pruneEvents(pool, retentionMs)
      .then((n) => {
        if (n > 0) log.info({ deleted: n }, 'pruned events past the retention window');
      })
      .catch((err: Error) => log.warn({ err: err.message }, 'event retention failed; will retry'))
      .finally(() => (running = undefined));
  };
  const timer = setInterval(run, everyMs);
  timer.unref();
  return {
    runNow: async () => {
      run();
      await running;
    },
    async stop() {
      clearInterval(timer);
      await running;
    },
  };
}
