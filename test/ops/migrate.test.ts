import { readdirSync } from 'node:fs';
import { afterAll, expect, test } from 'vitest';
import { spawnKasgate } from '../support/kasgate-process.js';
import { databaseUrl, queryInSchema, testSchema } from '../support/isolation.js';

const schema = testSchema();
afterAll(() => schema.drop());

test('`kasgate migrate` run by several replicas at once applies each migration once, then reports up to date', async () => {
  const env = { DATABASE_URL: databaseUrl(), KASGATE_DB_SCHEMA: schema.schema, LOG_LEVEL: 'info' };
  const racers = [spawnKasgate(['migrate'], env), spawnKasgate(['migrate'], env), spawnKasgate(['migrate'], env)];
  const codes = await Promise.all(racers.map(async (r) => (await r.exited).code));
  if (codes.some((c) => c !== 0)) console.error(racers.map((r) => r.output()).join('\n'));
  expect(codes).toEqual([0, 0, 0]);

  const applied = await queryInSchema<{ name: string }>(schema.schema, 'SELECT name FROM pgmigrations');
  const files = readdirSync(new URL('../../migrations', import.meta.url)).filter((f) => f.endsWith('.sql')).sort();
  expect(applied.map((r) => r.name)).toEqual(files.map((f) => f.replace(/\.sql$/, '')));
  const tables = await queryInSchema<{ table_name: string }>(
    schema.schema,
    'SELECT table_name FROM information_schema.tables WHERE table_schema = $1 ORDER BY 1',
    [schema.schema],
  );
  expect(tables.map((t) => t.table_name)).toEqual(
    expect.arrayContaining(['agents', 'agent_tokens', 'agent_grants', 'projects', 'push_events', 'agent_cursors']),
  );

  const again = spawnKasgate(['migrate'], env);
  expect((await again.exited).code).toBe(0);
  expect(again.output()).toMatch(/database is up to date/);
}, 60_000);
