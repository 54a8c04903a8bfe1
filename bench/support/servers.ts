/**
 * The servers under test, each a real process of its own: kasgate replicas (`kasgate serve`) and
 * floor relays. All are spawned with the probe preloaded and an IPC channel to read it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { mkdirSync, openSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import type { ProbeStats } from './probe.js';
import type { Deployment } from './deployment.js';

export const ROOT = new URL('../..', import.meta.url).pathname;
export const RESULTS_DIR = join(ROOT, 'bench/results');
export const PROFILES_DIR = join(RESULTS_DIR, 'profiles');
const PROBE = join(ROOT, 'bench/support/probe.ts');

export type TargetKind = 'kasgate' | 'floor-redis' | 'floor-memory';

export interface ServerProcess {
  kind: TargetKind;
  name: string;
  url: string;
  wsUrl: string;
  pid: number;
  /** Memory and event-loop delay from inside the process (optionally after a full GC). */
  stats(options?: { gc?: boolean; reset?: boolean }): Promise<ProbeStats>;
  stop(): Promise<void>;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

async function waitHealthy(url: string, child: ChildProcess, name: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`${name} exited with ${child.exitCode} before it was healthy; see its log under bench/results/logs`);
    try {
      const response = await fetch(`${url}/healthz`);
      if (response.ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${name} did not become healthy within ${timeoutMs} ms`);
}

async function spawnServer(kind: TargetKind, name: string, args: string[], env: NodeJS.ProcessEnv, logDir: string, cwd = ROOT): Promise<ServerProcess> {
  const port = await freePort();
  mkdirSync(logDir, { recursive: true });
  const logFd = openSync(join(logDir, `${name}.log`), 'w');
  const child = spawn(process.execPath, ['--expose-gc', '--import', 'tsx', '--import', PROBE, ...args], {
    cwd,
    env: { ...process.env, ...env, PORT: String(port) },
    stdio: ['ignore', logFd, logFd, 'ipc'],
  });
  closeSync(logFd);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const url = `http://127.0.0.1:${port}`;
  try {
    await waitHealthy(url, child, name);
  } catch (err) {
    child.kill('SIGKILL');
    throw err;
  }

  let nextId = 0;
  const waiting = new Map<number, (stats: ProbeStats) => void>();
  child.on('message', (message: { probe?: string; id: number; stats: ProbeStats }) => {
    if (message.probe === 'stats') waiting.get(message.id)?.(message.stats);
  });

  return {
    kind,
    name,
    url,
    wsUrl: url.replace(/^http/, 'ws'),
    pid: child.pid!,
    stats({ gc = false, reset = true } = {}) {
      const id = ++nextId;
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`${name}: no probe answer`)), 10_000);
        waiting.set(id, (stats) => {
          clearTimeout(timer);
          waiting.delete(id);
          resolve(stats);
        });
        child.send({ probe: 'stats', id, gc, reset });
      });
    },
    async stop() {
      if (child.exitCode !== null) return;
      child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), 15_000);
      await exited;
      clearTimeout(killer);
    },
  };
}

export interface KasgateOptions {
  name: string;
  useDist: boolean;
  /**
   * When set, `node --cpu-prof` writes the process's profiles at exit under
   * bench/results/profiles/<profileStamp>/<name>/ (one per thread: tsx's loader has its own).
   */
  profileStamp?: string;
  logLevel: string;
  logDir: string;
  /** Run the kasgate of another tree (a baseline checkout, see baseline.ts) rather than this one. */
  root?: string;
  /** Environment over the deployment's. */
  env?: Record<string, string>;
}

export function startKasgate(deployment: Deployment, options: KasgateOptions) {
  const entry = options.useDist ? ['dist/main.js', 'serve'] : ['src/main.ts', 'serve'];
  const profile = options.profileStamp
    ? ['--cpu-prof', `--cpu-prof-dir=${join(PROFILES_DIR, options.profileStamp, options.name)}`]
    : [];
  return spawnServer(
    'kasgate',
    options.name,
    [...profile, ...entry],
    { ...deployment.kasgateEnv, ...options.env, LOG_LEVEL: options.logLevel },
    options.logDir,
    options.root ?? ROOT,
  );
}

export function startFloor(mode: 'memory' | 'redis', deployment: Deployment, options: { name: string; logDir: string }) {
  return spawnServer(mode === 'redis' ? 'floor-redis' : 'floor-memory', options.name, ['bench/floor/relay.ts'], {
    FLOOR_MODE: mode,
    REDIS_URL: deployment.redisUrl,
    FLOOR_CHANNEL: `${deployment.redisPrefix}floor`,
  }, options.logDir);
}
