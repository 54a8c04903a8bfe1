/** Benchmark options, from the environment (the only reader of process.env in bench/). */
import { availableParallelism } from 'node:os';

export type ScenarioName = 'capacity' | 'throughput' | 'latency' | 'fanout' | 'replicas' | 'deployments';
export const ALL_SCENARIOS: ScenarioName[] = ['capacity', 'throughput', 'latency', 'fanout', 'replicas', 'deployments'];

export interface BenchOptions {
  full: boolean;
  scenarios: ScenarioName[];
  databaseUrl: string;
  redisUrl: string;
  /** Run kasgate from dist/ (after `npm run build`) instead of src/ through tsx. */
  useDist: boolean;
  /** Write a V8 CPU profile (`node --cpu-prof`) of every kasgate process. */
  profile: boolean;
  logLevel: string;
  subscriberProcesses: number;
  /** Rounds of each paired measurement (capacity: one); each figure is the best round. */
  rounds: number;
  throughput: { agents: number; projects: number; connections: number; seconds: number; warmupSeconds: number };
  latency: { rate: number; seconds: number };
  fanout: { agents: number; pushes: number };
  capacity: { agents: number; idleSeconds: number };
  /** Push → applied with agents reporting status; `baseline` is the git ref measured beside it (undefined: none). */
  deployments: { agents: number; rate: number; seconds: number; baseline: string | undefined };
}

function int(env: NodeJS.ProcessEnv, name: string, fallback: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value <= 0) throw new Error(`${name}: must be a positive whole number (got ${JSON.stringify(raw)})`);
  return value;
}

export function loadOptions(env: NodeJS.ProcessEnv): BenchOptions {
  const full = env.BENCH_FULL === '1';
  const only = (env.BENCH_ONLY ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  const unknown = only.filter((s) => !ALL_SCENARIOS.includes(s as ScenarioName));
  if (unknown.length > 0) throw new Error(`BENCH_ONLY: unknown scenario(s) ${unknown.join(', ')}; pick from ${ALL_SCENARIOS.join(', ')}`);
  return {
    full,
    scenarios: only.length > 0 ? ALL_SCENARIOS.filter((s) => only.includes(s)) : ALL_SCENARIOS,
    databaseUrl: env.DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/test',
    redisUrl: env.REDIS_URL || 'redis://127.0.0.1:6379',
    useDist: env.BENCH_DIST === '1',
    profile: env.BENCH_PROFILE === '1',
    logLevel: env.BENCH_LOG_LEVEL || 'info',
    rounds: int(env, 'BENCH_ROUNDS', 2),
    subscriberProcesses: int(env, 'BENCH_SUBSCRIBER_PROCESSES', Math.max(2, Math.min(4, availableParallelism()))),
    throughput: {
      agents: 200,
      projects: 100,
      connections: 32,
      seconds: int(env, 'BENCH_SECONDS', 5),
      warmupSeconds: 1,
    },
    latency: { rate: int(env, 'BENCH_LATENCY_RATE', 500), seconds: int(env, 'BENCH_SECONDS', 5) },
    fanout: { agents: int(env, 'BENCH_FANOUT_AGENTS', full ? 10_000 : 2_000), pushes: 10 },
    capacity: { agents: int(env, 'BENCH_CAPACITY_AGENTS', full ? 20_000 : 5_000), idleSeconds: 3 },
    deployments: {
      agents: 200,
      rate: int(env, 'BENCH_DEPLOY_RATE', 200),
      seconds: int(env, 'BENCH_SECONDS', 5),
      baseline: env.BENCH_BASELINE === 'none' ? undefined : env.BENCH_BASELINE || 'merge-base',
    },
  };
}
