/** Per-test isolation on the shared servers: a Postgres schema and a Redis key prefix, both removed afterwards. */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { inject } from 'vitest';
import { deleteRedisKeys, dropSchema } from './cleanup.js';

export const databaseUrl = (): string => inject('databaseUrl');
export const redisUrl = (): string => inject('redisUrl');

export function uniqueName(kind: string): string {
  return `${kind}_${randomBytes(5).toString('hex')}`;
}

/** A fresh schema name; the migrations create it. Returns a function that drops it. */
export function testSchema(): { schema: string; drop(): Promise<void> } {
  const schema = uniqueName('t');
  return {
    schema,
    drop: () => dropSchema(databaseUrl(), schema),
  };
}

/** A fresh Redis key prefix. Returns a function that deletes every key under it. */
export function testRedisPrefix(): { prefix: string; clean(): Promise<void> } {
  const prefix = `${uniqueName('kgtest')}:`;
  return {
    prefix,
    clean: () => deleteRedisKeys(redisUrl(), prefix),
  };
}

/** Runs SQL in the test's schema (to inspect what the gateway stored). */
export async function queryInSchema<T extends pg.QueryResultRow>(schema: string, sql: string, params: unknown[] = []): Promise<T[]> {
  const client = new pg.Client({ connectionString: databaseUrl(), options: `-c search_path=${schema}` });
  await client.connect();
  try {
    return (await client.query<T>(sql, params)).rows;
  } finally {
    await client.end();
  }
}
