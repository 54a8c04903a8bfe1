/**
 * Why the database could not be opened at start, as errors that know which setting is at fault,
 * so the CLI can say it in one line (src/cli/start-errors.ts).
 */
import type pg from 'pg';

/** PostgreSQL did not accept a connection: unreachable, wrong credentials, no such database. */
export class DatabaseConnectError extends Error {
  override name = 'DatabaseConnectError';
  constructor(
    /** host:port/database, never the password. */
    readonly target: string,
    readonly reason: string,
    options: { cause: unknown },
  ) {
    super(`cannot connect to PostgreSQL at ${target}: ${reason}`, options);
  }

  static from(connection: pg.ClientConfig, err: unknown): DatabaseConnectError {
    return new DatabaseConnectError(describeTarget(connection), connectReason(err), { cause: err });
  }
}

/** The embedded store's directory cannot be used: locked by another process, or not writable. */
export class DataDirError extends Error {
  override name = 'DataDirError';
}

function describeTarget(connection: pg.ClientConfig): string {
  if (connection.connectionString) {
    try {
      const url = new URL(connection.connectionString);
      return `${url.hostname || 'localhost'}:${url.port || 5432}${url.pathname.length > 1 ? url.pathname : ''}`;
    } catch {
      return 'the configured address';
    }
  }
  return `${connection.host ?? 'localhost'}:${connection.port ?? 5432}${connection.database ? `/${connection.database}` : ''}`;
}

const NETWORK_REASONS: Record<string, string> = {
  ECONNREFUSED: 'connection refused (is PostgreSQL running there?)',
  ENOTFOUND: 'unknown host',
  EAI_AGAIN: 'the host name could not be resolved',
  ETIMEDOUT: 'no answer (timed out)',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  ECONNRESET: 'the connection was reset',
};

function connectReason(err: unknown): string {
  const e = err as { code?: string; message?: string };
  if (e.code && NETWORK_REASONS[e.code]) return NETWORK_REASONS[e.code]!;
  if (e.message === 'timeout expired' || /connection timeout/i.test(e.message ?? '')) return 'no answer (timed out)';
  // SQLSTATE classes 28 (authorization) and 3D (no such database): PostgreSQL's own words say it best.
  return e.message ?? String(err);
}
