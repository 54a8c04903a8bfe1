import pg from 'pg';
import type { Logger } from 'pino';

// Event ids are bigints; keep them as strings end to end (JSON numbers lose precision past 2^53).
pg.types.setTypeParser(pg.types.builtins.INT8, (value) => value);

export interface PoolOptions {
  connection: pg.ClientConfig;
  schema: string;
  /** Connect and query timeout: a webhook must get its 503 well inside GitLab's 10 s budget. */
  timeoutMs: number;
  max: number;
  /**
   * Commit without waiting for the WAL flush (synchronous_commit=off): a Postgres crash may lose
   * the last few hundred milliseconds of commits, never consistency. For state that is rebuilt
   * or re-sent (cluster state, deployments, commit statuses), so that its commits do not queue
   * the event log's flushes; never for the event log.
   */
  asyncCommit?: boolean;
}

export function createPool(options: PoolOptions, log: Logger): pg.Pool {
  const pool = new pg.Pool({
    ...options.connection,
    max: options.max,
    connectionTimeoutMillis: options.timeoutMs,
    query_timeout: options.timeoutMs,
    statement_timeout: options.timeoutMs,
    idleTimeoutMillis: 30_000,
    keepAlive: true,
    options: `-c search_path=${options.schema}${options.asyncCommit ? ' -c synchronous_commit=off' : ''}`,
    application_name: 'kasgate',
  });
  // An idle client losing its server must not crash the process; the pool replaces it.
  pool.on('error', (err) => log.warn({ err: err.message }, 'postgres idle client error'));
  return pool;
}

const UNAVAILABLE_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', '57P01', '57P03', '57014']);

/** Whether an error means "Postgres is unreachable or too slow" rather than "this query is wrong". */
export function isStoreUnavailable(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const code = (err as { code?: string }).code;
  if (code && (UNAVAILABLE_CODES.has(code) || code.startsWith('08'))) return true;
  return /timeout|terminated|Connection ended|not queryable|ECONNREFUSED/i.test(err.message);
}
