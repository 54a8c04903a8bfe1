/**
 * `npm run bench`: kasgate against the floor relay, scenario by scenario, each pair back to back
 * in one run on this machine, reported as ratios. See bench/README.md.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { loadOptions, type BenchOptions } from './support/options.js';
import { createAgentsViaApi, createAgentsViaSql, createDeployment } from './support/deployment.js';
import { PROFILES_DIR, RESULTS_DIR, startFloor, startKasgate, type ServerProcess } from './support/servers.js';
import { markdown, table, writeResults } from './support/report.js';
import type { Figure } from './support/figures.js';
import { SubscriberPool } from './driver/subscribers.js';
import type { ScenarioContext, Target } from './scenarios/context.js';
import { capacityScenario } from './scenarios/capacity.js';
import { throughputScenario } from './scenarios/throughput.js';
import { latencyScenario } from './scenarios/latency.js';
import { fanoutScenario } from './scenarios/fanout.js';
import { deploymentsScenario } from './scenarios/deployments.js';
import { summarizeProfile } from './profile-summary.js';

const started = Date.now();
const log = (message: string) => console.log(`[bench +${((Date.now() - started) / 1000).toFixed(0).padStart(3)} s] ${message}`);

/** Open files this process (and so each server it spawns) may hold: each agent socket is one. */
function openFilesLimit(): number {
  const line = readFileSync('/proc/self/limits', 'utf8').split('\n').find((l) => l.startsWith('Max open files'));
  const soft = Number(line?.split(/\s{2,}/)[1]);
  return Number.isFinite(soft) ? soft : Infinity;
}

async function main(options: BenchOptions): Promise<void> {
  const startedAt = new Date();
  const notes: string[] = [];
  const stamp = startedAt.toISOString().replace(/[:.]/g, '-');
  const logDir = join(RESULTS_DIR, 'logs', stamp);
  const deployment = createDeployment(options.databaseUrl, options.redisUrl);
  const servers: ServerProcess[] = [];
  const pool = new SubscriberPool(options.subscriberProcesses);
  const ctx: ScenarioContext = { options, pool, log, windows: [], notes };
  const figures: Figure[] = [];
  const kasgateOptions = (name: string) => ({
    name,
    useDist: options.useDist,
    ...(options.profile ? { profileStamp: stamp } : {}),
    logLevel: options.logLevel,
    logDir,
  });

  let capacityAgents = options.capacity.agents;
  const fdRoom = openFilesLimit() - 200;
  if (capacityAgents > fdRoom) {
    notes.push(`capacity: N lowered from ${capacityAgents} to ${fdRoom}: the open-files limit (ulimit -n) is ${fdRoom + 200} and cannot be raised here`);
    capacityAgents = fdRoom;
  }

  let interrupted = false;
  const stopAll = async () => {
    pool.stop();
    await Promise.all(servers.map((s) => s.stop().catch(() => {})));
    await deployment.cleanup().catch((err: Error) => log(`cleanup failed: ${err.message}`));
  };
  // Ctrl-C reaches this process more than once (from the terminal, and relayed by tsx): clean up once.
  process.on('SIGINT', () => {
    if (interrupted) return;
    interrupted = true;
    log('interrupted: stopping servers and dropping the run schema');
    void stopAll().then(() => process.exit(130));
  });

  try {
    log(`starting kasgate (schema ${deployment.schema}, Redis prefix ${deployment.redisPrefix}) and the floor relays; logs in ${logDir}`);
    const [kasgate, floorRedis, floorMemory] = await Promise.all([
      startKasgate(deployment, kasgateOptions('kasgate-a')),
      startFloor('redis', deployment, { name: 'floor-redis-a', logDir }),
      startFloor('memory', deployment, { name: 'floor-memory', logDir }),
    ]);
    servers.push(kasgate, floorRedis, floorMemory);

    const apiAgents = await createAgentsViaApi(kasgate.url, deployment.adminToken, Array.from({ length: options.throughput.agents }, (_, i) => `tp-${i}`));
    const bulkCount = Math.max(options.scenarios.includes('fanout') ? options.fanout.agents : 0, options.scenarios.includes('capacity') ? capacityAgents : 0);
    const bulkAgents = await createAgentsViaSql(options.databaseUrl, deployment.schema, Array.from({ length: bulkCount }, (_, i) => `bulk-${i}`));
    log(`registered ${apiAgents.length} agents through the admin API and ${bulkAgents.length} by SQL`);

    const secret = deployment.webhookSecret;
    const withAgents = (agents: typeof apiAgents): Target => ({ kind: 'kasgate', servers: [kasgate], agents, webhookSecret: secret });
    const floors: Target[] = [
      { kind: 'floor-redis', servers: [floorRedis] },
      { kind: 'floor-memory', servers: [floorMemory] },
    ];

    for (const scenario of options.scenarios) {
      log(`— ${scenario}`);
      if (scenario === 'capacity') figures.push(...(await capacityScenario(ctx, [withAgents(bulkAgents), ...floors], capacityAgents)));
      if (scenario === 'throughput') figures.push(...(await throughputScenario(ctx, 'throughput', [withAgents(apiAgents), ...floors])));
      if (scenario === 'latency') figures.push(...(await latencyScenario(ctx, [withAgents(apiAgents), ...floors])));
      if (scenario === 'fanout') figures.push(...(await fanoutScenario(ctx, [withAgents(bulkAgents), ...floors])));
      if (scenario === 'deployments') {
        figures.push(...(await deploymentsScenario(ctx, { databaseUrl: options.databaseUrl, redisUrl: options.redisUrl, kasgateOptions, servers })));
      }
      if (scenario === 'replicas') {
        const [kasgateB, floorRedisB] = await Promise.all([
          startKasgate(deployment, kasgateOptions('kasgate-b')),
          startFloor('redis', deployment, { name: 'floor-redis-b', logDir }),
        ]);
        servers.push(kasgateB, floorRedisB);
        figures.push(
          ...(await throughputScenario(ctx, 'replicas', [
            { kind: 'kasgate', servers: [kasgate, kasgateB], agents: apiAgents, webhookSecret: secret },
            { kind: 'floor-redis', servers: [floorRedis, floorRedisB] },
          ])),
        );
      }
    }
  } finally {
    if (!interrupted) await stopAll();
  }
  if (interrupted) return;

  console.log(`\n${table(figures)}\n`);
  for (const note of notes) console.log(`note: ${note}`);
  const file = writeResults(figures, { options, startedAt, windows: ctx.windows, notes });
  console.log(`results: ${file}`);
  console.log(`\nMarkdown for bench/README.md:\n\n${markdown(figures)}\n`);
  if (options.profile) printProfiles(ctx, stamp);
  log('done');
}

/** With BENCH_PROFILE=1: the top self-time functions of kasgate in each scenario's measured window. */
function printProfiles(ctx: ScenarioContext, stamp: string): void {
  const dir = join(PROFILES_DIR, stamp);
  for (const name of readdirSync(dir)) {
    // The default file name is CPU.<date>.<time>.<pid>.<thread>.<seq>.cpuprofile; thread 0 is the main one.
    const mainThread = readdirSync(join(dir, name)).find((f) => f.split('.')[4] === '0');
    if (!mainThread) continue;
    const path = join(dir, name, mainThread);
    console.log(`\nCPU profile of ${name}: ${path}`);
    for (const window of ctx.windows.filter((w) => w.target.startsWith('kasgate'))) {
      const summary = summarizeProfile(path, window);
      if (summary) console.log(`\n${name}, ${window.scenario} window:\n${summary}`);
    }
  }
}

main(loadOptions(process.env)).catch((err: unknown) => {
  console.error(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  process.exitCode = 1;
});
