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
import { Redis } from 'ioredis';
import { databaseUrl, queryInSchema, redisUrl, testRedisPrefix, testSchema } from './isolation.js';
import { adminRequest, registerAgent, sendWebhook } from './api.js';
import { killWithTests, spawnKasgate, type ExitStatus } from './kasgate-process.js';

export type { ExitStatus } from './kasgate-process.js';

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
  const proc = spawnKasgate(['serve'], {
    ...env,
    HOST: '127.0.0.1',
    PORT: String(options.port ?? 0),
    // The port is read from the "kasgate listening" line.
    LOG_LEVEL: 'info',
    KASGATE_REPLICA_ID: options.name,
  });
  let port: number;
  try {
    port = Number((await proc.waitForLog(/^kasgate listening$/, options.startTimeoutMs ?? 20_000)).port);
  } catch (err) {
    proc.kill('SIGKILL');
    throw new Error(`replica ${options.name} did not start: ${(err as Error).message}`, { cause: err });
  }
  const url = `http://127.0.0.1:${port}`;
  return {
    name: options.name,
    port,
    url,
    wsUrl: url.replace(/^http/, 'ws'),
    child: proc.child,
    exited: proc.exited,
    logs: proc.lines,
    waitForLog: async (msg, timeoutMs = 10_000) => void (await proc.waitForLog(msg, timeoutMs)),
    kill: proc.kill,
    stop: proc.stop,
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
    admin: (baseUrl, method, path, body) => adminRequest(baseUrl, adminToken, method, path, body),
    createAgent: (baseUrl, name, configProject) => registerAgent(baseUrl, adminToken, { name, configProject }),
    postWebhook: (baseUrl, body, headers) => sendWebhook(baseUrl, webhookSecret, body, headers),
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
    killWithTests(proc);
    exited = new Promise((resolve) => proc.once('exit', () => resolve()));
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
