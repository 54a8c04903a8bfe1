/** Per-test isolation on the shared servers: a Postgres schema and a Redis key prefix, both removed afterwards. */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { Redis } from 'ioredis';
import { inject } from 'vitest';

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
    async drop() {
      const client = new pg.Client({ connectionString: databaseUrl() });
      await client.connect();
      try {
        await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
      } finally {
        await client.end();
      }
    },
  };
}

/** A fresh Redis key prefix. Returns a function that deletes every key under it. */
export function testRedisPrefix(): { prefix: string; clean(): Promise<void> } {
  const prefix = `${uniqueName('kgtest')}:`;
  return {
    prefix,
    async clean() {
      const redis = new Redis(redisUrl(), { lazyConnect: true, maxRetriesPerRequest: 1 });
      try {
        await redis.connect();
        let cursor = '0';
        do {
          const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 500);
          if (keys.length > 0) await redis.del(...keys);
          cursor = next;
        } while (cursor !== '0');
      } finally {
        redis.disconnect();
      }
    },
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
