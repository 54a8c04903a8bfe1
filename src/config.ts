/**
 * Environment → typed configuration. The only module of the gateway that reads the environment
 * (it is handed `process.env` by the CLI). A bad value throws a ConfigError naming the variable.
 */
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import { DEFAULT_DATA_DIR } from './embedded-secrets.js';
import { parseRegistryHost } from './agent/repo-url.js';

export class ConfigError extends Error {
  override name = 'ConfigError';
}

const DURATION_UNITS_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/** Parses `90s`, `15m`, `24h`, `7d` into milliseconds. */
export function parseDuration(text: string): number | undefined {
  const match = /^(\d+)(ms|s|m|h|d)$/.exec(text.trim());
  if (!match) return undefined;
  return Number(match[1]) * DURATION_UNITS_MS[match[2] as keyof typeof DURATION_UNITS_MS];
}

const optionalString = z
  .string()
  .transform((s) => s.trim())
  .optional()
  .transform((s) => (s ? s : undefined));

const list = z
  .string()
  .optional()
  .transform((s) => (s ?? '').split(',').map((item) => item.trim()).filter(Boolean));

const int = (fallback: number, min: number, max: number) =>
  z
    .string()
    .optional()
    .transform((s) => (s === undefined || s.trim() === '' ? String(fallback) : s.trim()))
    .pipe(z.string().regex(/^\d+$/, 'must be a whole number'))
    .transform(Number)
    .pipe(z.number().int().min(min).max(max));

const url = (protocols: string[]) =>
  optionalString.refine(
    (s) => {
      if (s === undefined) return true;
      try {
        return protocols.includes(new URL(s).protocol);
      } catch {
        return false;
      }
    },
    { message: `must be a URL (${protocols.join(' or ')})` },
  );

const duration = (fallback: string) =>
  z
    .string()
    .optional()
    .transform((s) => (s === undefined || s.trim() === '' ? fallback : s))
    .transform((s, ctx) => {
      const ms = parseDuration(s);
      if (ms === undefined || ms <= 0) {
        ctx.addIssue({ code: 'custom', message: 'must be a duration such as 90s, 15m, 24h or 7d' });
        return z.NEVER;
      }
      return ms;
    });

/** A 256-bit key given as 64 hex characters or as base64; undefined when it is neither. */
export function encryptionKeyBytes(text: string): Buffer | undefined {
  const key = /^[0-9a-fA-F]{64}$/.test(text) ? Buffer.from(text, 'hex') : Buffer.from(text, 'base64');
  return key.length === 32 ? key : undefined;
}

const EnvSchema = z.object({
  PORT: int(8080, 0, 65535),
  HOST: optionalString.transform((s) => s ?? '0.0.0.0'),
  DATABASE_URL: url(['postgres:', 'postgresql:']),
  KASGATE_DB_SCHEMA: optionalString.refine((s) => s === undefined || /^[a-z_][a-z0-9_]{0,62}$/.test(s), {
    message: 'must be a lower-case SQL identifier',
  }),
  REDIS_URL: url(['redis:', 'rediss:']),
  KASGATE_DATA_DIR: optionalString.transform((s) => s ?? DEFAULT_DATA_DIR),
  KASGATE_WEBHOOK_SECRETS: list,
  KASGATE_WEBHOOK_SIGNING_KEYS: list.refine((keys) => keys.every((k) => /^whsec_[A-Za-z0-9+/=]+$/.test(k)), {
    message: 'each key must look like whsec_<base64>',
  }),
  KASGATE_ADMIN_TOKEN: optionalString.refine((s) => s === undefined || s.length >= 16, {
    message: 'must be at least 16 characters',
  }),
  KASGATE_REDIS_PREFIX: optionalString.transform((s) => s ?? 'kasgate:'),
  KASGATE_EVENT_RETENTION: duration('24h'),
  KASGATE_HEARTBEAT_SECONDS: int(30, 1, 3600),
  KASGATE_MAX_BODY_BYTES: int(1_048_576, 1024, 26_214_400),
  KASGATE_REPLICA_ID: optionalString,
  KASGATE_DB_TIMEOUT_MS: int(1500, 100, 60_000),
  KASGATE_MAX_FRAME_BYTES: int(65_536, 256, 16_777_216),
  KASGATE_MAX_PROJECTS_PER_SUBSCRIBE: int(10_000, 1, 1_000_000),
  KASGATE_MAX_CONNECTIONS_PER_AGENT: int(10, 1, 10_000),
  KASGATE_MAX_BAD_FRAMES: int(5, 1, 1000),
  KASGATE_MAX_SEND_BUFFER_BYTES: int(4_194_304, 1024, 1_073_741_824),
  KASGATE_AUTH_FAILURES_PER_MINUTE: int(20, 1, 1_000_000),
  KASGATE_DRAIN_SECONDS: int(5, 0, 300),
  KASGATE_SWEEP_SECONDS: int(10, 1, 3600),
  KASGATE_TRUST_PROXY: optionalString
    .refine((s) => s === undefined || /^(true|false|[0-9a-fA-F.:/,\s]+)$/.test(s), {
      message: 'must be true, false, or a comma list of proxy addresses / CIDRs',
    })
    .transform((s): boolean | string => (s === undefined || s === 'false' ? false : s === 'true' ? true : s)),
  KASGATE_REGISTRY_SECRETS: list,
  KASGATE_GITLAB_URL: url(['http:', 'https:']),
  KASGATE_GITLAB_TOKEN: optionalString,
  KASGATE_GITLAB_REQUESTS_PER_SECOND: int(50, 1, 100_000),
  KASGATE_GITLAB_BURST: int(250, 1, 1_000_000),
  KASGATE_GITLAB_TIMEOUT: duration('10s'),
  KASGATE_CONFIG_REFRESH: duration('10m'),
  KASGATE_PUBLIC_URL: url(['http:', 'https:']),
  KASGATE_ENCRYPTION_KEY: optionalString.refine((s) => s === undefined || encryptionKeyBytes(s) !== undefined, {
    message: 'must be 32 random bytes, as 64 hex characters or base64 (openssl rand -base64 32)',
  }),
  KASGATE_REGISTRY_HOST: optionalString.refine((s) => s === undefined || parseRegistryHost(s) !== undefined, {
    message: 'must be host or host:port, as $CI_REGISTRY says it (registry.example.com, gitlab.example.com:5050)',
  }),
  KASGATE_MAX_STATUS_OBJECTS: int(5000, 1, 1_000_000),
  KASGATE_DEPLOYMENT_TIMEOUT: duration('30m'),
  KASGATE_UI_SESSION_TTL: duration('8h'),
  LOG_LEVEL: z
    .enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'])
    .optional()
    .transform((s) => s ?? 'info'),
});

export interface Config {
  port: number;
  host: string;
  /** Absent → embedded PGlite under dataDir. */
  databaseUrl: string | undefined;
  /** Postgres schema holding kasgate's tables (created by the migrations). */
  dbSchema: string;
  /** Absent → in-process bus and presence (one replica only). */
  redisUrl: string | undefined;
  dataDir: string;
  webhookSecrets: string[];
  webhookSigningKeys: string[];
  adminToken: string | undefined;
  redisPrefix: string;
  eventRetentionMs: number;
  heartbeatSeconds: number;
  maxBodyBytes: number;
  replicaId: string;
  dbTimeoutMs: number;
  limits: {
    maxFrameBytes: number;
    maxProjectsPerSubscribe: number;
    maxConnectionsPerAgent: number;
    maxBadFrames: number;
    maxSendBufferBytes: number;
    authFailuresPerMinute: number;
  };
  drainSeconds: number;
  sweepSeconds: number;
  /** Fastify's trustProxy: whose X-Forwarded-For to believe for agents' addresses (presence, auth rate limit). */
  trustProxy: boolean | string;
  /** Accepted `Authorization` header values of container registry notifications. */
  registrySecrets: string[];
  /** The GitLab API (commit statuses, config files, deploy tokens); undefined when not configured. */
  gitlab: { url: string; token: string; requestsPerSecond: number; burst: number; timeoutMs: number } | undefined;
  /** Where people reach this gateway (links in commit statuses), without a trailing slash. */
  publicUrl: string | undefined;
  /** AES-256-GCM key for what must be kept in clear (deploy tokens not yet applied). */
  encryptionKey: Buffer | undefined;
  /** GitLab's container registry host (for read_registry deploy tokens, as dockerconfigjson); undefined when not set. */
  registryHost: string | undefined;
  maxStatusObjects: number;
  deploymentTimeoutMs: number;
  /** How often each agent's config file is read again (besides registration and pushes to it). */
  configRefreshMs: number;
  /** How long a status page sign-in lasts. */
  uiSessionTtlMs: number;
  logLevel: string;
}

/**
 * What `serve` needs beyond a valid environment: outside embedded mode, the secrets must be
 * given (only embedded mode generates them).
 */
export function checkServeConfig(config: Config): void {
  if (config.databaseUrl === undefined) return;
  if (config.adminToken === undefined) {
    throw new ConfigError('KASGATE_ADMIN_TOKEN: required when DATABASE_URL is set (only the embedded mode generates one)');
  }
  if (config.webhookSecrets.length === 0 && config.webhookSigningKeys.length === 0) {
    throw new ConfigError(
      'KASGATE_WEBHOOK_SECRETS: set it (or KASGATE_WEBHOOK_SIGNING_KEYS) when DATABASE_URL is set (only the embedded mode generates one)',
    );
  }
}

export function loadConfig(env: Record<string, string | undefined>): Config {
  const parsed = EnvSchema.safeParse(env);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((issue) => {
      const name = String(issue.path[0] ?? 'environment');
      const shown = name in env && !/SECRET|TOKEN|KEY|URL/.test(name) ? ` (got ${JSON.stringify(env[name])})` : '';
      return `${name}: ${issue.message}${shown}`;
    });
    throw new ConfigError(`invalid configuration:\n  ${lines.join('\n  ')}`);
  }
  const e = parsed.data;
  if ((e.KASGATE_GITLAB_URL === undefined) !== (e.KASGATE_GITLAB_TOKEN === undefined)) {
    const missing = e.KASGATE_GITLAB_URL === undefined ? 'KASGATE_GITLAB_URL' : 'KASGATE_GITLAB_TOKEN';
    throw new ConfigError(`invalid configuration:\n  ${missing}: required when ${missing === 'KASGATE_GITLAB_URL' ? 'KASGATE_GITLAB_TOKEN' : 'KASGATE_GITLAB_URL'} is set (the GitLab API needs both)`);
  }
  return {
    port: e.PORT,
    host: e.HOST,
    databaseUrl: e.DATABASE_URL,
    dbSchema: e.KASGATE_DB_SCHEMA ?? 'public',
    redisUrl: e.REDIS_URL,
    dataDir: e.KASGATE_DATA_DIR,
    webhookSecrets: e.KASGATE_WEBHOOK_SECRETS,
    webhookSigningKeys: e.KASGATE_WEBHOOK_SIGNING_KEYS,
    adminToken: e.KASGATE_ADMIN_TOKEN,
    redisPrefix: e.KASGATE_REDIS_PREFIX,
    eventRetentionMs: e.KASGATE_EVENT_RETENTION,
    heartbeatSeconds: e.KASGATE_HEARTBEAT_SECONDS,
    maxBodyBytes: e.KASGATE_MAX_BODY_BYTES,
    replicaId: e.KASGATE_REPLICA_ID ?? `${hostname()}-${randomBytes(3).toString('hex')}`,
    dbTimeoutMs: e.KASGATE_DB_TIMEOUT_MS,
    limits: {
      maxFrameBytes: e.KASGATE_MAX_FRAME_BYTES,
      maxProjectsPerSubscribe: e.KASGATE_MAX_PROJECTS_PER_SUBSCRIBE,
      maxConnectionsPerAgent: e.KASGATE_MAX_CONNECTIONS_PER_AGENT,
      maxBadFrames: e.KASGATE_MAX_BAD_FRAMES,
      maxSendBufferBytes: e.KASGATE_MAX_SEND_BUFFER_BYTES,
      authFailuresPerMinute: e.KASGATE_AUTH_FAILURES_PER_MINUTE,
    },
    drainSeconds: e.KASGATE_DRAIN_SECONDS,
    sweepSeconds: e.KASGATE_SWEEP_SECONDS,
    trustProxy: e.KASGATE_TRUST_PROXY,
    registrySecrets: e.KASGATE_REGISTRY_SECRETS,
    gitlab:
      e.KASGATE_GITLAB_URL !== undefined && e.KASGATE_GITLAB_TOKEN !== undefined
        ? {
            url: e.KASGATE_GITLAB_URL.replace(/\/+$/, ''),
            token: e.KASGATE_GITLAB_TOKEN,
            requestsPerSecond: e.KASGATE_GITLAB_REQUESTS_PER_SECOND,
            burst: e.KASGATE_GITLAB_BURST,
            timeoutMs: e.KASGATE_GITLAB_TIMEOUT,
          }
        : undefined,
    publicUrl: e.KASGATE_PUBLIC_URL?.replace(/\/+$/, ''),
    encryptionKey: e.KASGATE_ENCRYPTION_KEY === undefined ? undefined : encryptionKeyBytes(e.KASGATE_ENCRYPTION_KEY),
    registryHost: e.KASGATE_REGISTRY_HOST === undefined ? undefined : parseRegistryHost(e.KASGATE_REGISTRY_HOST),
    maxStatusObjects: e.KASGATE_MAX_STATUS_OBJECTS,
    deploymentTimeoutMs: e.KASGATE_DEPLOYMENT_TIMEOUT,
    configRefreshMs: Math.max(100, e.KASGATE_CONFIG_REFRESH),
    uiSessionTtlMs: e.KASGATE_UI_SESSION_TTL,
    logLevel: e.LOG_LEVEL,
  };
}
