/**
 * A real gateway for tests: the production config loader, context and server, listening on a
 * free port, on real Postgres (a schema of its own) and real Redis (a key prefix of its own),
 * or in embedded mode. Several gateways can share one deployment to act as replicas.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { randomBytes } from 'node:crypto';
import { loadConfig } from '../../src/config.js';
import { createLogger } from '../../src/log.js';
import { startServer, type RunningServer } from '../../src/server.js';
import type { AppContext } from '../../src/context.js';
import { databaseUrl, redisUrl, testRedisPrefix, testSchema } from './isolation.js';
import { adminRequest, registerAgent, sendWebhook } from './api.js';

export interface GatewayOptions {
  /** Extra environment (limits, heartbeat...), applied over the test defaults; a function is read at start (e.g. a stand-in's URL). */
  env?: Record<string, string> | (() => Record<string, string>);
  /** Run with no DATABASE_URL / REDIS_URL: PGlite under a temporary data dir, in-process bus. */
  embedded?: boolean;
  /** Postgres, but no REDIS_URL (in-process bus and presence). */
  noRedis?: boolean;
  /** Another replica of the same deployment: same schema, Redis prefix and secrets. */
  peer?: TestGateway;
  /** Every log line the gateway writes lands here (instead of stdout). */
  logLines?: string[];
}

export interface TestGateway {
  url: string;
  wsUrl: string;
  adminToken: string;
  webhookSecret: string;
  schema: string;
  redisPrefix: string;
  env: Record<string, string>;
  readonly server: RunningServer;
  readonly ctx: AppContext;
  admin<T = any>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T }>;
  createAgent(name: string, configProject: string, config?: Record<string, unknown>): Promise<{ id: string; token: string }>;
  postWebhook(body: object | string | Buffer, headers?: Record<string, string>): Promise<Response>;
  /** Graceful stop and start again on the same port and data. */
  restart(): Promise<void>;
  close(): Promise<void>;
}

export async function startGateway(options: GatewayOptions = {}): Promise<TestGateway> {
  const owner = options.peer === undefined;
  const schema = options.peer ? null : testSchema();
  const prefix = options.peer ? null : testRedisPrefix();
  const dataDir = options.embedded ? await mkdtemp(join(tmpdir(), 'kasgate-test-')) : undefined;
  const adminToken = options.peer?.adminToken ?? `admin-${randomBytes(16).toString('hex')}`;
  const webhookSecret = options.peer?.webhookSecret ?? `hook-${randomBytes(16).toString('hex')}`;

  const env: Record<string, string> = {
    HOST: '127.0.0.1',
    PORT: '0',
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
    KASGATE_ADMIN_TOKEN: adminToken,
    KASGATE_WEBHOOK_SECRETS: webhookSecret,
    ...(options.embedded
      ? { KASGATE_DATA_DIR: dataDir! }
      : {
          DATABASE_URL: databaseUrl(),
          KASGATE_DB_SCHEMA: options.peer?.schema ?? schema!.schema,
          ...(options.noRedis ? {} : { REDIS_URL: redisUrl(), KASGATE_REDIS_PREFIX: options.peer?.redisPrefix ?? prefix!.prefix }),
        }),
    ...(options.peer ? pick(options.peer.env, /^KASGATE_(HEARTBEAT|MAX|AUTH|EVENT|SWEEP)/) : {}),
    ...(typeof options.env === 'function' ? options.env() : options.env),
  };
  const lines = options.logLines;
  const log = createLogger(env.LOG_LEVEL!, lines ? { write: (line: string) => void lines.push(line) } : undefined);
  let server = await startServer(loadConfig(env), log);
  const port = new URL(server.url).port;
  env.PORT = port;

  const gateway: TestGateway = {
    url: server.url,
    wsUrl: server.url.replace(/^http/, 'ws'),
    adminToken,
    webhookSecret,
    schema: env.KASGATE_DB_SCHEMA ?? '',
    redisPrefix: env.KASGATE_REDIS_PREFIX ?? '',
    env,
    get server() {
      return server;
    },
    get ctx() {
      return server.ctx;
    },
    admin: (method, path, body) => adminRequest(server.url, adminToken, method, path, body),
    createAgent: (name, configProject, config) => registerAgent(server.url, adminToken, { name, configProject, config }),
    postWebhook: (body, headers) => sendWebhook(server.url, webhookSecret, body, headers),
    async restart() {
      await server.shutdown();
      server = await startServer(loadConfig(env), log);
    },
    async close() {
      await server.shutdown();
      if (owner) {
        await schema?.drop();
        await prefix?.clean();
        if (dataDir) await rm(dataDir, { recursive: true, force: true });
      }
    },
  };
  return gateway;
}

function pick(env: Record<string, string>, pattern: RegExp): Record<string, string> {
  return Object.fromEntries(Object.entries(env).filter(([k]) => pattern.test(k)));
}

/**
 * A gateway for the enclosing describe block (or file): started in beforeAll, closed in afterAll.
 * The handle forwards to it, so tests use it like the gateway itself.
 */
export function useGateway(options: GatewayOptions = {}): TestGateway {
  let current: TestGateway | undefined;
  beforeAll(async () => {
    current = await startGateway(options);
  });
  afterAll(async () => {
    await current?.close();
  });
  return forwardTo(() => current);
}

/** Two replicas of one deployment (the second a peer of the first), for the enclosing block. */
export function useReplicaPair(options: GatewayOptions = {}): [TestGateway, TestGateway] {
  let first: TestGateway | undefined;
  let second: TestGateway | undefined;
  beforeAll(async () => {
    first = await startGateway(options);
    second = await startGateway({ ...options, peer: first });
  });
  afterAll(async () => {
    await second?.close();
    await first?.close();
  });
  return [forwardTo(() => first), forwardTo(() => second)];
}

function forwardTo(get: () => TestGateway | undefined): TestGateway {
  return new Proxy({} as TestGateway, {
    get(_target, key) {
      const gateway = get();
      if (!gateway) throw new Error('the gateway is used outside its describe block (or before beforeAll ran)');
      const value = Reflect.get(gateway, key, gateway);
      return typeof value === 'function' ? value.bind(gateway) : value;
    },
  });
}
