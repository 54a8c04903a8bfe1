import { fileURLToPath } from 'node:url';
import { createHash } from 'node:crypto';
import pg from 'pg';
import { runner } from 'node-pg-migrate';
import type { Logger } from 'pino';
import { DatabaseConnectError } from './errors.js';

const MIGRATIONS_DIR = fileURLToPath(new URL('../../migrations', import.meta.url));

/**
 * Applies pending migrations under a Postgres advisory lock, waiting for it, so that several
 * replicas may start at once. The lock is per schema, so separate deployments don't queue.
 */
export async function migrate(connection: pg.ClientConfig, schema: string, log: Logger): Promise<string[]> {
  const client = new pg.Client({ ...connection, connectionTimeoutMillis: 10_000 });
  try {
    await client.connect();
  } catch (err) {
    throw DatabaseConnectError.from(connection, err);
  }
  try {
    const applied = await runner({
      dbClient: client,
      dir: MIGRATIONS_DIR,
      direction: 'up',
      migrationsTable: 'pgmigrations',
      schema,
      createSchema: true,
      advisoryLockMode: 'wait',
      lockValue: lockValueFor(schema),
      checkOrder: true,
      logger: { debug: () => {}, info: () => {}, warn: (m: string) => log.warn(m), error: (m: string) => log.error(m) },
    });
    const names = applied.map((m) => m.name);
    if (names.length > 0) log.info({ migrations: names }, 'applied database migrations');
    return names;
  } finally {
    await client.end();
  }
}

function lockValueFor(schema: string): number {
  // A stable 48-bit number: fits a JS safe integer and Postgres' bigint advisory key.
  return parseInt(createHash('sha256').update(`kasgate:${schema}`).digest('hex').slice(0, 12), 16);
}
