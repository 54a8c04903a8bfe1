/**
 * What one idle agent connection keeps on the heap, by object kind: a heap snapshot before and
 * after N agents connect, diffed and divided by N. Runs kasgate (or the floor) in this process.
 *
 *   node --expose-gc --import tsx bench/heap-per-connection.ts [kasgate|floor] [N]
 */
import v8 from 'node:v8';
import { readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../src/config.js';
import { createLogger } from '../src/log.js';
import { startServer } from '../src/server.js';
import { loadOptions } from './support/options.js';
import { createAgentsViaSql, createDeployment } from './support/deployment.js';
import { freePort } from './support/servers.js';
import { SubscriberPool } from './driver/subscribers.js';
import { clientSpecs, sleep, type Target } from './scenarios/context.js';
import { projectPath } from './driver/pushes.js';

type Tally = Map<string, { bytes: number; count: number }>;

/** Self size and count of every heap object, by constructor (objects, closures) or by kind. */
function tallyHeap(): Tally {
  const file = v8.writeHeapSnapshot(join(tmpdir(), `kasgate-bench-${process.pid}.heapsnapshot`));
  const snapshot = JSON.parse(readFileSync(file, 'utf8'));
  rmSync(file);
  const fields: string[] = snapshot.snapshot.meta.node_fields;
  const types: string[] = snapshot.snapshot.meta.node_types[0];
  const [typeAt, nameAt, sizeAt] = ['type', 'name', 'self_size'].map((f) => fields.indexOf(f)) as [number, number, number];
  const tally: Tally = new Map();
  for (let i = 0; i < snapshot.nodes.length; i += fields.length) {
    const type = types[snapshot.nodes[i + typeAt]]!;
    const name: string = snapshot.strings[snapshot.nodes[i + nameAt]];
    const key = type === 'object' || type === 'native' ? name : type === 'closure' ? `closure ${name || '(anonymous)'}` : `(${type})`;
    const entry = tally.get(key) ?? { bytes: 0, count: 0 };
    entry.bytes += snapshot.nodes[i + sizeAt];
    entry.count++;
    tally.set(key, entry);
  }
  return tally;
}

async function settledTally(): Promise<Tally> {
  await sleep(1000);
  globalThis.gc?.();
  return tallyHeap();
}

const [which = 'kasgate', count = '2000'] = process.argv.slice(2);
const agents = Number(count);
const options = loadOptions(process.env);
const deployment = createDeployment(options.databaseUrl, options.redisUrl);
const port = await freePort();
let stop = async () => {};
let target: Target;
if (which === 'floor') {
  process.env.PORT = String(port);
  await import('./floor/relay.js');
  target = { kind: 'floor-memory', servers: [{ wsUrl: `ws://127.0.0.1:${port}` } as Target['servers'][number]] };
} else {
  const server = await startServer(loadConfig({ ...deployment.kasgateEnv, PORT: String(port), LOG_LEVEL: 'info' }), createLogger('silent'));
  stop = () => server.shutdown();
  const registered = await createAgentsViaSql(options.databaseUrl, deployment.schema, Array.from({ length: agents }, (_, i) => `heap-${i}`));
  target = { kind: 'kasgate', servers: [{ wsUrl: `ws://127.0.0.1:${port}` } as Target['servers'][number]], agents: registered };
}

const pool = new SubscriberPool(2);
try {
  // Warm every code path first, so that compiled code does not count as per-connection memory.
  await pool.connect(clientSpecs(target, 50, (i) => projectPath('idle', i % 100)));
  await pool.closeAll();
  const before = await settledTally();
  await pool.connect(clientSpecs(target, agents, (i) => projectPath('idle', i % 100)));
  const after = await settledTally();
  const rows = [...after]
    .map(([key, v]) => ({ key, bytes: (v.bytes - (before.get(key)?.bytes ?? 0)) / agents, count: (v.count - (before.get(key)?.count ?? 0)) / agents }))
    .sort((a, b) => b.bytes - a.bytes);
  console.log(`${which}: heap growth per idle connection ${rows.reduce((sum, r) => sum + r.bytes, 0).toFixed(0)} bytes (N=${agents})`);
  for (const row of rows.slice(0, 30)) console.log(`${row.bytes.toFixed(0).padStart(7)} B  ${row.count.toFixed(2).padStart(6)} ×  ${row.key}`);
} finally {
  pool.stop();
  await stop();
  await deployment.cleanup();
  process.exit(0);
}
