/**
 * What is wrong with Postgres, in words, for /readyz: never node-postgres' own text, never the
 * credentials in DATABASE_URL.
 */
import type pg from 'pg';

/** postgres://host:port/database of a connection, without user or password. */
export function storeAddress(connection: pg.ClientConfig, embedded: boolean): string {
  if (embedded) return 'the embedded store';
  try {
    const u = new URL(connection.connectionString ?? '');
    return `${u.protocol}//${u.hostname}:${u.port || '5432'}${u.pathname}`;
  } catch {
    return 'DATABASE_URL';
  }
}

/** Why a Postgres connection or query failed, as a few words. */
export function describeStoreError(err: unknown, timeoutMs: number): string {
  if (!(err instanceof Error)) return 'unreachable';
  const code = (err as { code?: string }).code;
  const text = err.message;
  if (code === 'ECONNREFUSED' || /ECONNREFUSED/.test(text)) return 'connection refused';
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return 'host not found';
  if (code === '28P01' || code === '28000') return 'authentication failed (check the credentials in DATABASE_URL)';
  if (code === '3D000') return 'the database does not exist';
  if (code === '57P01' || code === '57P02' || code === '57P03') return 'the server is shutting down or starting up';
  if (code === '53300') return 'too many connections';
  if (code === 'ETIMEDOUT' || code === '57014' || /timeout|timed out/i.test(text)) return `not answering within ${timeoutMs} ms`;
  if (code === 'ECONNRESET' || code === 'EPIPE' || /terminated|Connection ended|ECONNRESET/i.test(text)) return 'connection reset';
  return 'unreachable';
}
