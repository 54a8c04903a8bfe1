import { describe, expect, test } from 'vitest';
import { checkServeConfig, ConfigError, loadConfig, parseDuration } from '../../src/config.js';
import { spawnKasgate } from '../support/kasgate-process.js';

describe('configuration from the environment', () => {
  test('defaults: embedded mode on port 8080, 24h retention, 30 s heartbeat, 1 MiB bodies', () => {
    const config = loadConfig({});
    expect(config).toMatchObject({
      port: 8080,
      databaseUrl: undefined,
      redisUrl: undefined,
      dataDir: './data',
      eventRetentionMs: 24 * 3600_000,
      heartbeatSeconds: 30,
      maxBodyBytes: 1_048_576,
      redisPrefix: 'kasgate:',
      limits: { maxFrameBytes: 65_536, maxProjectsPerSubscribe: 10_000, maxConnectionsPerAgent: 10 },
    });
  });

  test('lists and durations are parsed', () => {
    const config = loadConfig({
      KASGATE_WEBHOOK_SECRETS: ' one, two ,,',
      KASGATE_WEBHOOK_SIGNING_KEYS: 'whsec_c2VjcmV0',
      KASGATE_EVENT_RETENTION: '90m',
    });
    expect(config.webhookSecrets).toEqual(['one', 'two']);
    expect(config.webhookSigningKeys).toEqual(['whsec_c2VjcmV0']);
    expect(config.eventRetentionMs).toBe(90 * 60_000);
    expect(parseDuration('7d')).toBe(7 * 86_400_000);
    expect(parseDuration('soon')).toBeUndefined();
  });

  test.each([
    ['PORT', 'eighty'],
    ['PORT', '70000'],
    ['DATABASE_URL', 'mysql://x'],
    ['REDIS_URL', 'not a url'],
    ['KASGATE_EVENT_RETENTION', 'forever'],
    ['KASGATE_HEARTBEAT_SECONDS', '0'],
    ['KASGATE_MAX_BODY_BYTES', '-1'],
    ['KASGATE_WEBHOOK_SIGNING_KEYS', 'plain-secret'],
    ['KASGATE_ADMIN_TOKEN', 'short'],
    ['LOG_LEVEL', 'loud'],
    ['KASGATE_DB_SCHEMA', 'Robert"); DROP'],
    ['KASGATE_ENCRYPTION_KEY', 'too-short'],
    ['KASGATE_DEPLOYMENT_TIMEOUT', 'never'],
    ['KASGATE_MAX_STATUS_OBJECTS', 'lots'],
    ['KASGATE_REGISTRY_HOST', 'https://registry.example.com/v2'],
  ])('%s=%s is refused with a message naming the variable', (name, value) => {
    expect(() => loadConfig({ [name]: value })).toThrow(ConfigError);
    expect(() => loadConfig({ [name]: value })).toThrow(new RegExp(`^invalid configuration:\\n  ${name}: `));
  });

  test('a secret-looking value is never echoed in the message', () => {
    const attempt = () => loadConfig({ KASGATE_ADMIN_TOKEN: 'tiny', REDIS_URL: 'redis-password' });
    expect(attempt).toThrow(/KASGATE_ADMIN_TOKEN: must be at least 16 characters/);
    expect(attempt).not.toThrow(/tiny|redis-password/);
  });

  test('the GitLab API needs both its URL and its token; a 32-byte key is taken as hex or base64', () => {
    expect(() => loadConfig({ KASGATE_GITLAB_URL: 'https://gitlab.example.com' })).toThrow(/KASGATE_GITLAB_TOKEN: required/);
    expect(() => loadConfig({ KASGATE_GITLAB_TOKEN: 'glpat-x' })).toThrow(/KASGATE_GITLAB_URL: required/);
    const config = loadConfig({
      KASGATE_GITLAB_URL: 'https://gitlab.example.com/',
      KASGATE_GITLAB_TOKEN: 'glpat-x',
      KASGATE_ENCRYPTION_KEY: 'ab'.repeat(32),
      KASGATE_REGISTRY_SECRETS: 'Bearer one,Bearer two',
    });
    expect(config.gitlab).toEqual({ url: 'https://gitlab.example.com', token: 'glpat-x', requestsPerSecond: 50, burst: 250, timeoutMs: 10_000 });
    expect(config.encryptionKey?.length).toBe(32);
    expect(config.registrySecrets).toEqual(['Bearer one', 'Bearer two']);
    expect(loadConfig({ KASGATE_ENCRYPTION_KEY: Buffer.alloc(32, 7).toString('base64') }).encryptionKey).toEqual(Buffer.alloc(32, 7));
    expect(loadConfig({}).deploymentTimeoutMs).toBe(30 * 60_000);
    expect(loadConfig({ KASGATE_REGISTRY_HOST: 'GitLab.example.com:5050' }).registryHost).toBe('gitlab.example.com:5050');
    expect(loadConfig({}).registryHost).toBeUndefined();
    const timed = loadConfig({ KASGATE_GITLAB_URL: 'https://gitlab.example.com', KASGATE_GITLAB_TOKEN: 'glpat-x', KASGATE_GITLAB_TIMEOUT: '90s' });
    expect(timed.gitlab?.timeoutMs).toBe(90_000);
    expect(() => loadConfig({ KASGATE_GITLAB_TIMEOUT: 'soon' })).toThrow(/KASGATE_GITLAB_TIMEOUT: must be a duration/);
    expect(() => loadConfig({ KASGATE_DEPLOYMENT_TIMEOUT: '0s' })).toThrow(/KASGATE_DEPLOYMENT_TIMEOUT: must be a duration/);
  });

  test('serving on Postgres requires the admin token and a webhook secret', () => {
    const base = { DATABASE_URL: 'postgres://db/kasgate' };
    expect(() => checkServeConfig(loadConfig(base))).toThrow(/^KASGATE_ADMIN_TOKEN: /);
    expect(() => checkServeConfig(loadConfig({ ...base, KASGATE_ADMIN_TOKEN: 'a'.repeat(20) }))).toThrow(/^KASGATE_WEBHOOK_SECRETS: /);
    expect(() =>
      checkServeConfig(loadConfig({ ...base, KASGATE_ADMIN_TOKEN: 'a'.repeat(20), KASGATE_WEBHOOK_SECRETS: 's' })),
    ).not.toThrow();
  });

  test('`kasgate serve` with PORT=eighty exits non-zero naming PORT', async () => {
    const cli = spawnKasgate(['serve'], { PORT: 'eighty' });
    const { code } = await cli.exited;
    expect(code).not.toBe(0);
    expect(cli.output()).toMatch(/PORT: must be a whole number/);
  });
});
