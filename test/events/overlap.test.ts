/**
 * Appends overlap (migrations/1764400000000_overlapping_appends.sql): a batch still committing does
 * not hold up the next one, yet no reader ever sees an event while one below it may still commit,
 * and a batch that rolls back leaves a hole nobody waits for.
 */
import { afterAll, beforeAll, expect, test } from 'vitest';
import type pg from 'pg';
import { createPool } from '../../src/db/pool.js';
import { migrate } from '../../src/db/migrate.js';
import { createEventLog, type EventLog } from '../../src/events/event-log.js';
import type { PushEvent } from '../../src/events/event.js';
import { pruneEvents } from '../../src/events/retention.js';
import { createLogger } from '../../src/log.js';
import { createMetrics } from '../../src/metrics.js';
import { databaseUrl, testSchema } from '../support/isolation.js';
import { nextProjectId } from '../support/fixtures.js';
import { newKey } from '../gitlab/support/webhooks.js';

const log = createLogger('silent');
const schema = testSchema();
let pool: pg.Pool;
let events: EventLog;

beforeAll(async () => {
  const connection = { connectionString: databaseUrl() };
  await migrate(connection, schema.schema, log);
  pool = createPool({ connection, schema: schema.schema, timeoutMs: 5000, max: 6 }, log);
  events = createEventLog(pool, { log, metrics: createMetrics(), onAppended: () => {} });
});
afterAll(async () => {
  await pool?.end();
  await schema.drop();
});

function push(projectId: number, key = newKey()): PushEvent {
  return {
    kind: 'push',
    projectId,
    projectPath: `overlap/p${projectId}`,
    visibility: 0,
    defaultBranch: 'main',
    ref: 'refs/heads/main',
    before: '0'.repeat(40),
    after: 'b'.repeat(40),
    checkoutSha: null,
    userUsername: null,
    receivedAt: new Date(),
    idempotencyKey: { scope: 'gitlab', value: key },
  };
}

/** A batch as append_push_events takes it, appended on `client` inside a transaction left open. */
async function appendOpen(client: pg.PoolClient, projectId: number, keys: string[]): Promise<string[]> {
  const batch = keys.map((key, ord) => ({
    ord,
    kind: 'push',
    project_id: projectId,
    project_path: `overlap/p${projectId}`,
    ref: 'refs/heads/main',
    after_sha: 'a'.repeat(40),
    idempotency_key: key,
    received_at: new Date().toISOString(),
  }));
  await client.query('BEGIN');
  const { rows } = await client.query<{ event_id: string }>('SELECT event_id FROM append_push_events($1::jsonb) ORDER BY ord', [
    JSON.stringify(batch),
  ]);
  return rows.map((r) => r.event_id);
}

const within = <T>(work: Promise<T>, ms: number) =>
  Promise.race([work, new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`not done within ${ms} ms`)), ms))]);

test('a batch commits while an earlier one is open; readers see neither until the earlier one commits, then both in id order', async () => {
  const start = await events.highestId();
  const early = await pool.connect();
  try {
    const earlyIds = await appendOpen(early, nextProjectId(), [newKey(), newKey()]);

    // Not held up by the open batch (the draw lock is not held through COMMIT).
    const later = await within(events.append(push(nextProjectId())).result, 3000);
    expect(BigInt(later.eventId)).toBeGreaterThan(BigInt(earlyIds[1]!));

    // The later event is committed, but an id below it may still commit: nobody is shown it.
    expect(await events.readAfter(start, 100)).toEqual([]);
    expect(BigInt(await events.highestId())).toBeLessThan(BigInt(earlyIds[0]!));
    expect(await pruneEvents(pool, 0)).toBe(0);

    await early.query('COMMIT');
    const read = await events.readAfter(start, 100);
    expect(read.map((e) => e.id)).toEqual([...earlyIds, later.eventId]);
    expect(await events.highestId()).toBe(later.eventId);
  } finally {
    early.release();
  }
});

test('a batch that rolls back leaves a hole that readers pass once it has ended', async () => {
  const start = await events.highestId();
  const doomed = await pool.connect();
  try {
    const doomedIds = await appendOpen(doomed, nextProjectId(), [newKey()]);
    const later = await within(events.append(push(nextProjectId())).result, 3000);
    expect(await events.readAfter(start, 100)).toEqual([]);

    await doomed.query('ROLLBACK');
    const read = await events.readAfter(start, 100);
    expect(read.map((e) => e.id)).toEqual([later.eventId]);
    expect(read.map((e) => e.id)).not.toContain(doomedIds[0]);
  } finally {
    doomed.release();
  }
});

test('the same key in two overlapping batches is stored once: the second gets the first one\'s id as a duplicate', async () => {
  const key = newKey();
  const first = await pool.connect();
  try {
    const [firstId] = await appendOpen(first, nextProjectId(), [key]);
    // The second waits for the first's transaction on the key, then sees it stored.
    const second = events.append(push(nextProjectId(), key)).result;
    await new Promise((resolve) => setTimeout(resolve, 200));
    await first.query('COMMIT');
    expect(await within(second, 3000)).toEqual({ eventId: firstId, duplicate: true });
    const { rows } = await pool.query('SELECT id FROM push_events WHERE idempotency_key = $1', [key]);
    expect(rows).toHaveLength(1);
  } finally {
    first.release();
  }
});
