/**
 * The event log's append, below HTTP, on a real Postgres schema: what the doorbell is told, and
 * that one event the database refuses does not fail the events batched with it.
 */
import { afterAll, beforeAll, expect, test } from 'vitest';
import type pg from 'pg';
import { createPool } from '../../src/db/pool.js';
import { migrate } from '../../src/db/migrate.js';
import { createEventLog, type AppendedBatch, type EventLog } from '../../src/events/event-log.js';
import type { IdempotencyKey, PushEvent } from '../../src/events/event.js';
import { createLogger } from '../../src/log.js';
import { createMetrics } from '../../src/metrics.js';
import { databaseUrl, testSchema } from '../support/isolation.js';
import { nextProjectId } from '../support/fixtures.js';
import { newKey } from '../gitlab/support/webhooks.js';

const log = createLogger('silent');
const schema = testSchema();
let pool: pg.Pool;
let events: EventLog;
const doorbell: AppendedBatch[] = [];

beforeAll(async () => {
  const connection = { connectionString: databaseUrl() };
  await migrate(connection, schema.schema, log);
  pool = createPool({ connection, schema: schema.schema, timeoutMs: 1500, max: 4 }, log);
  events = createEventLog(pool, { log, metrics: createMetrics(), onAppended: (batch) => doorbell.push(batch) });
});
afterAll(async () => {
  await pool?.end();
  await schema.drop();
});

const gitlabKey = (value: string = newKey()): IdempotencyKey => ({ scope: 'gitlab', value });
/** The refs of listed events (pushes here). */
const refs = (listed: object[]) => listed.map((e) => ('ref' in e ? e.ref : undefined));

function push(projectId: number, overrides: Partial<PushEvent> = {}): PushEvent {
  return {
    kind: 'push',
    projectId,
    projectPath: `log/p${projectId}`,
    visibility: 0,
    defaultBranch: 'main',
    ref: 'refs/heads/main',
    before: '0'.repeat(40),
    after: 'a'.repeat(40),
    checkoutSha: null,
    userUsername: null,
    receivedAt: new Date(),
    idempotencyKey: gitlabKey(),
    ...overrides,
  };
}

test('the doorbell gets every new event once, in id order, each batch saying which id preceded it', async () => {
  doorbell.length = 0;
  const id = nextProjectId();
  const key = gitlabKey();
  const submissions = Array.from({ length: 60 }, (_, i) => events.append(push(id, i % 10 === 0 ? { idempotencyKey: key } : {})));
  const results = await Promise.all(submissions.map((s) => s.result));

  const stored = new Set(results.map((r) => r.eventId));
  expect(stored.size).toBe(55); // the six copies of one key make one event
  expect(results.filter((r) => r.duplicate)).toHaveLength(5);

  const rung = doorbell.flatMap((b) => b.events.map((e) => e.id));
  expect(new Set(rung)).toEqual(stored);
  expect(rung).toHaveLength(stored.size);
  for (let i = 1; i < doorbell.length; i++) {
    expect(doorbell[i]!.prevId).toBe(doorbell[i - 1]!.events.at(-1)!.id);
  }
});

test('an event the database refuses fails alone; the events batched with it are stored', async () => {
  const id = nextProjectId();
  // A NUL byte cannot be stored in Postgres text; the HTTP layer refuses it, the log must cope anyway.
  const poisoned = push(id, { ref: 'refs/heads/a\u0000b' });
  const good = Array.from({ length: 8 }, (_, i) => push(id, { ref: `refs/heads/ok${i}` }));
  const submissions = [events.append(good[0]!), ...good.slice(1, 4).map((e) => events.append(e)), events.append(poisoned), ...good.slice(4).map((e) => events.append(e))];
  const outcomes = await Promise.allSettled(submissions.map((s) => s.result));

  expect(outcomes.map((o) => o.status)).toEqual([...Array(4).fill('fulfilled'), 'rejected', ...Array(4).fill('fulfilled')]);
  const listed = await events.list({ project: String(id), limit: 100 });
  expect(refs(listed)).toEqual(good.map((e) => e.ref));
});

test('a cancelled submission that has not been written yet is never stored', async () => {
  const id = nextProjectId();
  // The first append is in flight at once; the second waits in the queue, where it can be dropped.
  const first = events.append(push(id, { ref: 'refs/heads/kept' }));
  const dropped = events.append(push(id, { ref: 'refs/heads/dropped' }));
  dropped.cancel();
  await first.result;
  // Something after it, so that its batch has certainly been written.
  await events.append(push(id, { ref: 'refs/heads/after' })).result;
  const listed = await events.list({ project: String(id), limit: 100 });
  expect(refs(listed)).toEqual(['refs/heads/kept', 'refs/heads/after']);
});

test('a delivery is stored whole or not at all, even when its batch falls back to one delivery at a time', async () => {
  const id = nextProjectId();
  const good = events.appendDelivery([push(id, { ref: 'refs/heads/g1' }), push(id, { ref: 'refs/heads/g2' })]);
  // One event of this delivery cannot be stored: the whole delivery is refused, its other event too.
  const poisoned = events.appendDelivery([push(id, { ref: 'refs/heads/p1' }), push(id, { ref: 'refs/heads/p\u00002' })]);
  const after = events.appendDelivery([push(id, { ref: 'refs/heads/g3' })]);
  const outcomes = await Promise.allSettled([good.result, poisoned.result, after.result]);
  expect(outcomes.map((o) => o.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
  expect(refs(await events.list({ project: String(id), limit: 100 }))).toEqual(['refs/heads/g1', 'refs/heads/g2', 'refs/heads/g3']);
});

test('artifact events share the id sequence and read back as they were appended', async () => {
  const id = nextProjectId();
  const common = { projectId: id, projectPath: `log/p${id}`, visibility: 20, defaultBranch: 'main', userUsername: 'ci', receivedAt: new Date() };
  const results = await events.appendDelivery([
    push(id),
    { ...common, kind: 'artifact', source: 'pipeline', ref: 'refs/heads/main', sha: 'c'.repeat(40), pipelineId: 7, idempotencyKey: gitlabKey() },
    { ...common, kind: 'artifact', source: 'registry', repository: `log/p${id}/img`, tag: 'v1', digest: null, idempotencyKey: { scope: 'registry', value: newKey() } },
  ]).result;
  const ids = results.map((r) => r.eventId);
  expect(ids.map(BigInt)).toEqual(ids.map(BigInt).sort((a, b) => (a < b ? -1 : 1)));
  const read = await events.readAfter(String(BigInt(ids[0]!) - 1n), 10, [`log/p${id}`]);
  expect(read.map((e) => [e.id, e.kind, 'source' in e ? e.source : null])).toEqual([
    [ids[0], 'push', null],
    [ids[1], 'artifact', 'pipeline'],
    [ids[2], 'artifact', 'registry'],
  ]);
  expect(read[1]).toMatchObject({ ref: 'refs/heads/main', sha: 'c'.repeat(40), pipelineId: 7 });
  expect(read[2]).toMatchObject({ repository: `log/p${id}/img`, tag: 'v1', digest: null });
});

test('the same key value in two scopes is two keys', async () => {
  const id = nextProjectId();
  const value = newKey();
  const results = await Promise.all(
    (['gitlab', 'gitlab_change', 'registry'] as const).map((scope) => events.append(push(id, { idempotencyKey: { scope, value } })).result),
  );
  expect(results.map((r) => r.duplicate)).toEqual([false, false, false]);
  expect(new Set(results.map((r) => r.eventId)).size).toBe(3);
});
