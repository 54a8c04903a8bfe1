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
  ])('%s=%s is refused with a message naming the variable', (name, value) => {
    expect(() => loadConfig({ [name]: value })).toThrow(ConfigError);
    expect(() => loadConfig({ [name]: value })).toThrow(new RegExp(`^invalid configuration:\\n  ${name}: `));
  });

  test('a secret-looking value is never echoed in the message', () => {
    const attempt = () => loadConfig({ KASGATE_ADMIN_TOKEN: 'tiny', REDIS_URL: 'redis-password' });
    expect(attempt).toThrow(/KASGATE_ADMIN_TOKEN: must be at least 16 characters/);
    expect(attempt).not.toThrow(/tiny|redis-password/);
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
