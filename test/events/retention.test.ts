import { describe, expect, test } from 'vitest';
import { useGateway, type TestGateway } from '../support/gateway.js';
import { eventually } from '../support/agent-client.js';
import { pushBody } from '../support/fixtures.js';
import { queryInSchema } from '../support/isolation.js';

/** Inserts `count` events received `ageSql` ago straight into the log (a backlog, fast). */
async function insertOldEvents(gw: TestGateway, count: number, ageSql: string): Promise<void> {
  await queryInSchema(
    gw.schema,
    `INSERT INTO push_events (kind, project_id, project_path, visibility, default_branch, ref, before_sha, after_sha, received_at)
     SELECT 'push', 7, 'ret/old', 20, 'main', 'refs/heads/main', repeat('0', 40), md5(g::text) || 'abcdefgh', now() - ${ageSql}::interval
     FROM generate_series(1, $1::int) AS g`,
    [count],
  );
}

async function accept(gw: TestGateway, path: string): Promise<string> {
  const res = await gw.postWebhook(pushBody({ path, projectId: 9 }));
  expect(res.status).toBe(202);
  return ((await res.json()) as { eventId: string }).eventId;
}

const counts = async (gw: TestGateway) => {
  const [row] = await queryInSchema<{ old: string; young: string; pruned: string }>(
    gw.schema,
    `SELECT (SELECT count(*) FROM push_events WHERE project_path = 'ret/old') AS old,
            (SELECT count(*) FROM push_events WHERE project_path <> 'ret/old') AS young,
            (SELECT pruned_through FROM event_log_state) AS pruned`,
  );
  return { old: Number(row!.old), young: Number(row!.young), pruned: row!.pruned };
};

describe('retention with the default 24h window', () => {
  const gw = useGateway();

  test('a large prune runs in batches while webhooks keep getting 202 promptly', { timeout: 60_000 }, async () => {
    await insertOldEvents(gw, 50_000, "'2 days'");
    const [{ max: lastOld } = { max: '' }] = await queryInSchema<{ max: string }>(gw.schema, 'SELECT max(id)::text AS max FROM push_events');

    const prune = { done: false };
    const pruneStarted = Date.now();
    const pruning = gw.ctx.retention.runNow().then(() => {
      prune.done = true;
      return Date.now() - pruneStarted;
    });

    const latencies: number[] = [];
    const statuses: number[] = [];
    let duringPrune = 0;
    const sender = async (lane: number) => {
      for (let i = 0; !prune.done || i < 5; i++) {
        const started = Date.now();
        const res = await gw.postWebhook(pushBody({ path: 'ret/young', projectId: 8, after: `${lane}`.padEnd(40, String(i % 10)) }));
        await res.arrayBuffer();
        statuses.push(res.status);
        latencies.push(Date.now() - started);
        if (!prune.done) duringPrune++;
      }
    };
    await Promise.all([sender(1), sender(2), sender(3), sender(4)]);
    const pruneMs = await pruning;

    const after = await counts(gw);
    const slowest = Math.max(...latencies);
    console.log(
      `retention: pruned 50000 rows in ${pruneMs} ms; ${duringPrune} webhooks answered meanwhile, slowest ${slowest} ms, median ${latencies.sort((a, b) => a - b)[latencies.length >> 1]} ms`,
    );
    expect(after.old).toBe(0);
    expect(after.young).toBe(statuses.length);
    expect(after.pruned).toBe(lastOld);
    expect(statuses.every((s) => s === 202)).toBe(true);
    expect(duringPrune).toBeGreaterThan(0);
    // Ingest never waited for the prune as a whole, only at worst for a moment of I/O.
    expect(slowest).toBeLessThan(1500);
  });
});

describe('retention with a 1s window', () => {
  const gw = useGateway({ env: { KASGATE_EVENT_RETENTION: '1s' } });

  test('events older than the window go, younger ones stay, and pruned_through marks the cut', async () => {
    const first = await accept(gw, 'ret/short');
    const second = await accept(gw, 'ret/short');
    // Wait for the window to pass for both, then store one more that must survive.
    await eventually(
      () => queryInSchema<{ age: number }>(gw.schema, 'SELECT extract(epoch FROM now() - min(received_at)) AS age FROM push_events'),
      (rows) => Number(rows[0]?.age) > 1.2,
      5000,
    );
    const young = await accept(gw, 'ret/short');
    await gw.ctx.retention.runNow();

    const ids = (await queryInSchema<{ id: string }>(gw.schema, 'SELECT id::text FROM push_events ORDER BY push_events.id')).map((r) => r.id);
    expect(ids).toEqual([young]);
    const [state] = await queryInSchema<{ pruned: string }>(gw.schema, 'SELECT pruned_through::text AS pruned FROM event_log_state');
    expect(state!.pruned).toBe(second);
    expect(BigInt(first)).toBeLessThan(BigInt(second));
  });
});
