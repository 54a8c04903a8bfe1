/**
 * The delivery writer when Postgres goes away (a TCP proxy in front of the real server): what was
 * recorded meanwhile is written once it is back, and nothing is lost or written twice.
 */
import { afterAll, beforeAll, expect, test } from 'vitest';
import { pino } from 'pino';
import { createPool } from '../../src/db/pool.js';
import { createDeliveryWriter } from '../../src/deployments/deliveries.js';
import { createDeploymentTracker } from '../../src/deployments/tracker.js';
import { createMetrics } from '../../src/metrics.js';
import { eventually } from '../support/agent-client.js';
import { useGateway } from '../support/gateway.js';
import { databaseUrl, queryInSchema } from '../support/isolation.js';
import { startTcpProxy, type TcpProxy } from '../support/tcp-proxy.js';

// The gateway migrates the schema; the writer under test has a pool of its own, through the proxy.
const gw = useGateway();
let proxy: TcpProxy;

beforeAll(async () => {
  const real = new URL(databaseUrl());
  proxy = await startTcpProxy(real.hostname, Number(real.port || 5432));
});
afterAll(async () => {
  await proxy?.close();
});

test('deliveries recorded while Postgres is cut are written once it is back, each agent once', { timeout: 30_000 }, async () => {
  const proxied = new URL(databaseUrl());
  proxied.hostname = '127.0.0.1';
  proxied.port = String(proxy.port);
  const log = pino({ level: 'silent' });
  const metrics = createMetrics();
  const pool = createPool({ connection: { connectionString: proxied.toString() }, schema: gw.schema, timeoutMs: 1000, max: 2 }, log);
  const delivered: string[] = [];
  const writer = createDeliveryWriter({
    pool,
    tracker: createDeploymentTracker({ timeoutMs: 60_000, publicUrl: undefined, gitlabUrl: undefined, statuses: false, metrics, log }),
    metrics,
    log,
    onDelivered: (eventIds) => delivered.push(...eventIds),
    onWritten: () => {},
  });
  const failures = async () => (await metrics.registry.getSingleMetricAsString('kasgate_agent_write_failures_total')).match(/ (\d+)$/m)?.[1];
  const agents = ['0a0a0a0a-0000-4000-8000-000000000001', '0a0a0a0a-0000-4000-8000-000000000002'];
  const eventId = '9100000001';
  try {
    proxy.cut();
    writer.record(eventId, agents);
    writer.record(eventId, [agents[0]!]);
    await eventually(failures, (n) => Number(n) > 0, 10_000);
    expect(delivered).toEqual([]);
    proxy.restore();
    const rows = await eventually(
      () => queryInSchema<{ agent_id: string }>(gw.schema, 'SELECT unnest(agent_ids)::text AS agent_id FROM event_deliveries WHERE event_id = $1', [eventId]),
      (r) => r.length > 0,
      10_000,
    );
    expect(rows.map((r) => r.agent_id).sort()).toEqual(agents);
    expect(delivered).toEqual([eventId]);
  } finally {
    await writer.close();
    await pool.end();
  }
});
