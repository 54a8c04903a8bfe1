/**
 * Child processes for failure tests: gateway replicas run as the real command
 * (`node --import tsx src/main.ts serve`), so that SIGTERM and SIGKILL mean what they mean in
 * production, and a private redis-server that a test may kill and restart.
 *
 * A Deployment is the shared environment of a set of replicas (Postgres schema, Redis prefix,
 * secrets) plus the HTTP helpers a test needs against any of its replicas.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { databaseUrl, queryInSchema, redisUrl, testRedisPrefix, testSchema } from './isolation.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const KEPT_LOG_LINES = 3000;

/** Children still running, killed if the test process goes away first. */
const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of live) child.kill('SIGKILL');
});

export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Milliseconds from the first signal sent by stop()/kill() to the exit. */
  afterSignalMs: number | undefined;
}

export interface ReplicaProcess {
  name: string;
  port: number;
  url: string;
  wsUrl: string;
  child: ChildProcess;
  exited: Promise<ExitStatus>;
  /** The last log lines (JSON, as the replica wrote them). */
  logs(): string[];
  /** Resolves once a log line whose msg matches is written (or was, among the kept lines). */
  waitForLog(msg: RegExp, timeoutMs?: number): Promise<void>;
  kill(signal: NodeJS.Signals): void;
  /** SIGTERM, then waits for the exit. */
  stop(): Promise<ExitStatus>;
}

export interface ReplicaOptions {
  name: string;
  /** Listen here (a restart on the same address); default: any free port. */
  port?: number;
  startTimeoutMs?: number;
}

/** Starts `kasgate serve` with `env` and resolves once it listens. */
export async function startReplicaProcess(env: Record<string, string>, options: ReplicaOptions): Promise<ReplicaProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts', 'serve'], {
    cwd: ROOT,
    env: {
      PATH: process.env.PATH ?? '',
      ...env,
      HOST: '127.0.0.1',
      PORT: String(options.port ?? 0),
      // The launcher reads the port from the "kasgate listening" line.
      LOG_LEVEL: 'info',
      KASGATE_REPLICA_ID: options.name,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  live.add(child);
  const lines: string[] = [];
  let signalledAt: number | undefined;
  let onLine: ((line: string) => void) | undefined;
  const lineWatchers = new Set<(line: string) => void>();
  const collect = (stream: NodeJS.ReadableStream) => {
    let partial = '';
    stream.on('data', (chunk: Buffer) => {
      const parts = (partial + chunk.toString()).split('\n');
      partial = parts.pop()!;
      for (const line of parts) {
        lines.push(line);
        if (lines.length > KEPT_LOG_LINES) lines.shift();
        onLine?.(line);
        for (const watch of lineWatchers) watch(line);
      }
    });
  };
  collect(child.stdout!);
  collect(child.stderr!);
  const exited = new Promise<ExitStatus>((resolve) =>
    child.once('exit', (code, signal) => {
      live.delete(child);
      resolve({ code, signal, afterSignalMs: signalledAt === undefined ? undefined : Date.now() - signalledAt });
    }),
  );

  const port = await new Promise<number>((resolve, reject) => {
    let settled = false;
    const timer = setTimeout(() => fail(`did not listen within ${options.startTimeoutMs ?? 20_000} ms`), options.startTimeoutMs ?? 20_000);
    const fail = (why: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      onLine = undefined;
      child.kill('SIGKILL');
      reject(new Error(`replica ${options.name} ${why}:\n${lines.slice(-40).join('\n')}`));
    };
    onLine = (line) => {
      if (!line.includes('"kasgate listening"')) return;
      settled = true;
      clearTimeout(timer);
      onLine = undefined;
      resolve(Number((JSON.parse(line) as { port: number }).port));
    };
    void exited.then(({ code, signal }) => fail(`exited (${code ?? signal}) before listening`));
  });

  const url = `http://127.0.0.1:${port}`;
  const kill = (signal: NodeJS.Signals) => {
    signalledAt ??= Date.now();
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
  };
  return {
    name: options.name,
    port,
    url,
    wsUrl: url.replace(/^http/, 'ws'),
    child,
    exited,
    logs: () => [...lines],
    waitForLog(msg, timeoutMs = 10_000) {
      const matches = (line: string) => {
        try {
          return msg.test(String((JSON.parse(line) as { msg?: unknown }).msg ?? ''));
        } catch {
          return false;
        }
      };
      if (lines.some(matches)) return Promise.resolve();
      return new Promise((resolve, reject) => {
        const watch = (line: string) => {
          if (!matches(line)) return;
          lineWatchers.delete(watch);
          clearTimeout(timer);
          resolve();
        };
        const timer = setTimeout(() => {
          lineWatchers.delete(watch);
          reject(new Error(`replica ${options.name} logged no ${msg} within ${timeoutMs} ms`));
        }, timeoutMs);
        lineWatchers.add(watch);
      });
    },
    kill,
    async stop() {
      kill('SIGTERM');
      return exited;
    },
  };
}

export interface Deployment {
  /** What every replica of this deployment gets. */
  env: Record<string, string>;
  schema: string;
  redisPrefix: string;
  adminToken: string;
  webhookSecret: string;
  admin<T = any>(baseUrl: string, method: string, path: string, body?: unknown): Promise<{ status: number; body: T }>;
  createAgent(baseUrl: string, name: string, configProject: string): Promise<{ id: string; token: string }>;
  postWebhook(baseUrl: string, body: object, headers?: Record<string, string>): Promise<Response>;
  query<T extends Record<string, unknown>>(sql: string, params?: unknown[]): Promise<T[]>;
  /** Drops the schema and the Redis keys (of the shared Redis; a private one just dies). */
  cleanup(): Promise<void>;
}

export function createDeployment(options: { redisUrl?: string; env?: Record<string, string> } = {}): Deployment {
  const schema = testSchema();
  const prefix = testRedisPrefix();
  const adminToken = `admin-${randomBytes(16).toString('hex')}`;
  const webhookSecret = `hook-${randomBytes(16).toString('hex')}`;
  const env = {
    DATABASE_URL: databaseUrl(),
    KASGATE_DB_SCHEMA: schema.schema,
    REDIS_URL: options.redisUrl ?? redisUrl(),
    KASGATE_REDIS_PREFIX: prefix.prefix,
    KASGATE_ADMIN_TOKEN: adminToken,
    KASGATE_WEBHOOK_SECRETS: webhookSecret,
    ...options.env,
  };
  const deployment: Deployment = {
    env,
    schema: schema.schema,
    redisPrefix: prefix.prefix,
    adminToken,
    webhookSecret,
    async admin(baseUrl, method, path, body) {
      const response = await fetch(`${baseUrl}/api/v1${path}`, {
        method,
        headers: { authorization: `Bearer ${adminToken}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const text = await response.text();
      return { status: response.status, body: text ? JSON.parse(text) : undefined };
    },
    async createAgent(baseUrl, name, configProject) {
      const { status, body } = await deployment.admin(baseUrl, 'POST', '/agents', { name, configProject });
      if (status !== 201) throw new Error(`creating agent ${name}: ${status} ${JSON.stringify(body)}`);
      return { id: body.agent.id, token: body.token.token };
    },
    postWebhook(baseUrl, body, headers = {}) {
      return fetch(`${baseUrl}/webhooks/gitlab`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-gitlab-token': webhookSecret, 'x-gitlab-event': 'Push Hook', ...headers },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(10_000),
      });
    },
    query: (sql, params) => queryInSchema(schema.schema, sql, params),
    async cleanup() {
      await schema.drop();
      if (options.redisUrl === undefined) await prefix.clean();
    },
  };
  return deployment;
}

export interface RedisServer {
  port: number;
  url: string;
  /** SIGKILL: everything in it is gone (it runs with no persistence). */
  kill(): Promise<void>;
  /** Starts it again on the same port. */
  start(): Promise<void>;
  close(): Promise<void>;
}

/** A redis-server of the test's own on a spare port, with no persistence. */
export async function startRedisServer(): Promise<RedisServer> {
  const port = await sparePort();
  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();

  async function start(): Promise<void> {
    const proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
      stdio: 'ignore',
    });
    child = proc;
    live.add(proc);
    exited = new Promise((resolve) => proc.once('exit', () => (live.delete(proc), resolve())));
    const deadline = Date.now() + 10_000;
    for (;;) {
      const probe = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
      probe.on('error', () => {});
      try {
        await probe.connect();
        if ((await probe.ping()) === 'PONG') return;
      } catch {
        if (Date.now() > deadline) throw new Error(`redis-server on port ${port} did not start`);
        await new Promise((r) => setTimeout(r, 50));
      } finally {
        probe.disconnect();
      }
    }
  }

  async function kill(): Promise<void> {
    child?.kill('SIGKILL');
    await exited;
  }

  await start();
  return { port, url: `redis://127.0.0.1:${port}`, kill, start, close: kill };
}

async function sparePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}
