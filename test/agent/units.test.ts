import { describe, expect, it } from 'vitest';
import { RequestedAtClock, formatRfc3339Nano } from '../../src/agent/annotate.js';
import { backoffDelay } from '../../src/agent/backoff.js';
import { AgentConfigError, DEFAULT_WEBHOOK_RECEIVER_URL, parseAgentConfig } from '../../src/agent/config.js';
import { EventCursor } from '../../src/agent/event-cursor.js';
import { connectUrl } from '../../src/agent/gateway-client.js';
import { managedObjectName } from '../../src/agent/receivers.js';
import { receiverUrlFromConfig, signBody } from '../../src/agent/trigger.js';

const BASE_ENV = {
  KASGATE_URL: 'https://kasgate.example.com',
  KASGATE_AGENT_TOKEN: 'kgagent_x',
  GITLAB_EXTERNAL_URL: 'https://gitlab.example.com',
  KUBERNETES_SERVICE_HOST: '10.0.0.1',
};

describe('agent configuration', () => {
  it('parses a minimal environment with defaults', () => {
    const config = parseAgentConfig(BASE_ENV);
    expect(config).toMatchObject({
      gatewayUrl: 'https://kasgate.example.com',
      agentToken: 'kgagent_x',
      gitlabUrl: 'https://gitlab.example.com',
      watchNamespaces: [],
      webhookReceiverUrl: DEFAULT_WEBHOOK_RECEIVER_URL,
      health: { host: '0.0.0.0', port: 8081 },
      triggerMode: 'annotate',
    });
    expect(config.kubeconfig).toBeUndefined();
    expect(config.registryHost).toBeUndefined();
  });

  it('reads the trigger mode and the registry host', () => {
    expect(parseAgentConfig({ ...BASE_ENV, KASGATE_TRIGGER_MODE: 'receiver' }).triggerMode).toBe('receiver');
    expect(parseAgentConfig({ ...BASE_ENV, KASGATE_TRIGGER_MODE: ' Annotate ' }).triggerMode).toBe('annotate');
    expect(parseAgentConfig({ ...BASE_ENV, KASGATE_REGISTRY_HOST: 'GitLab.example.com:5050' }).registryHost).toBe('gitlab.example.com:5050');
    expect(parseAgentConfig({ ...BASE_ENV, KASGATE_REGISTRY_HOST: '' }).registryHost).toBeUndefined();
  });

  it('reads lists, the receiver URL forms, and a token file', () => {
    const config = parseAgentConfig({
      ...BASE_ENV,
      KASGATE_AGENT_TOKEN: undefined,
      KASGATE_AGENT_TOKEN_FILE: '/var/run/kasgate/token',
      KASGATE_WATCH_NAMESPACES: 'flux-system, apps ,',
      KASGATE_FLUX_WEBHOOK_RECEIVER_URL: '/api/v1/namespaces/flux-system/services/webhook-receiver/proxy',
    });
    expect(config.watchNamespaces).toEqual(['flux-system', 'apps']);
    expect(config.agentTokenFile).toBe('/var/run/kasgate/token');
    expect(config.webhookReceiverUrl).toBe('/api/v1/namespaces/flux-system/services/webhook-receiver/proxy');
  });

  it.each([
    [{ KASGATE_URL: undefined }, 'KASGATE_URL'],
    [{ KASGATE_URL: 'kasgate.example.com' }, 'KASGATE_URL'],
    [{ GITLAB_EXTERNAL_URL: 'ssh://gitlab.example.com' }, 'GITLAB_EXTERNAL_URL'],
    [{ KASGATE_AGENT_TOKEN: undefined }, 'KASGATE_AGENT_TOKEN'],
    [{ KASGATE_AGENT_TOKEN_FILE: '/token' }, 'KASGATE_AGENT_TOKEN_FILE'],
    [{ KASGATE_WATCH_NAMESPACES: 'Flux_System' }, 'KASGATE_WATCH_NAMESPACES'],
    [{ KASGATE_FLUX_WEBHOOK_RECEIVER_URL: '/webhook' }, 'KASGATE_FLUX_WEBHOOK_RECEIVER_URL'],
    [{ KASGATE_AGENT_HEALTH_PORT: '80a' }, 'KASGATE_AGENT_HEALTH_PORT'],
    [{ KASGATE_AGENT_HEALTH_PORT: '70000' }, 'KASGATE_AGENT_HEALTH_PORT'],
    [{ LOG_LEVEL: 'loud' }, 'LOG_LEVEL'],
    [{ KASGATE_TRIGGER_MODE: 'webhook' }, 'KASGATE_TRIGGER_MODE must be annotate or receiver'],
    [{ KASGATE_REGISTRY_HOST: 'https://registry.example.com' }, 'KASGATE_REGISTRY_HOST must be the registry host'],
    [{ KASGATE_REGISTRY_HOST: 'registry.example.com/group' }, 'KASGATE_REGISTRY_HOST'],
    [{ KUBERNETES_SERVICE_HOST: undefined }, 'KUBECONFIG'],
  ])('rejects %o naming %s', (patch, variable) => {
    expect(() => parseAgentConfig({ ...BASE_ENV, ...patch })).toThrow(AgentConfigError);
    expect(() => parseAgentConfig({ ...BASE_ENV, ...patch })).toThrow(variable);
  });

  it('never puts the token in an error message', () => {
    const attempt = (env: Record<string, string | undefined>): unknown => {
      try {
        return parseAgentConfig(env);
      } catch (err) {
        return err;
      }
    };
    for (const env of [
      { ...BASE_ENV, KASGATE_AGENT_TOKEN_FILE: '/token' },
      { ...BASE_ENV, KASGATE_URL: 'kgagent_x' },
    ]) {
      const error = attempt(env);
      expect(error).toBeInstanceOf(AgentConfigError);
      expect(String(error)).not.toContain('kgagent_x');
    }
  });
});

describe('gateway connect URL', () => {
  it.each([
    ['https://kasgate.example.com', 'wss://kasgate.example.com/agent/v1/connect'],
    ['http://kasgate:8080/', 'ws://kasgate:8080/agent/v1/connect'],
    ['wss://example.com/kasgate/', 'wss://example.com/kasgate/agent/v1/connect'],
  ])('%s → %s', (base, expected) => {
    expect(connectUrl(base).toString()).toBe(expected);
  });
});

describe('managed object names', () => {
  it('prefixes short names, by kind', () => {
    expect(managedObjectName('app')).toBe('kasgate-app');
    expect(managedObjectName('app', 'GitRepository')).toBe('kasgate-app');
    expect(managedObjectName('app', 'OCIRepository')).toBe('kasgate-oci-app');
  });

  it('keeps long names within 63 characters, distinct, and DNS-valid', () => {
    const a = managedObjectName(`${'a'.repeat(60)}-one`);
    const b = managedObjectName(`${'a'.repeat(60)}-two`);
    const dotted = managedObjectName(`${'x'.repeat(51)}.${'y'.repeat(100)}`);
    for (const name of [a, b, dotted, managedObjectName('z'.repeat(253)), managedObjectName('z'.repeat(253), 'OCIRepository')]) {
      expect(name.length).toBeLessThanOrEqual(63);
      expect(name).toMatch(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/);
    }
    expect(a).not.toBe(b);
    expect(managedObjectName('z'.repeat(253), 'OCIRepository')).not.toBe(managedObjectName('z'.repeat(253)));
  });
});

describe('event cursor', () => {
  it('drops redeliveries and acks only what everything before it has finished', () => {
    const cursor = new EventCursor();
    expect(cursor.begin('5')).toBe(true);
    expect(cursor.begin('6')).toBe(true);
    expect(cursor.begin('5')).toBe(false);
    expect(cursor.finish('6')).toBeUndefined();
    expect(cursor.resumeAfter).toBeUndefined();
    expect(cursor.finish('5')).toBe('6');
    expect(cursor.resumeAfter).toBe('6');
    expect(cursor.begin('6')).toBe(false);
  });

  it('never moves the resume point backwards', () => {
    const cursor = new EventCursor();
    cursor.begin('10');
    cursor.finish('10');
    cursor.begin('9');
    expect(cursor.finish('9')).toBeUndefined();
    expect(cursor.resumeAfter).toBe('10');
  });

  it('compares ids as numbers, not strings', () => {
    const cursor = new EventCursor();
    cursor.begin('9');
    cursor.begin('10');
    cursor.finish('9');
    expect(cursor.finish('10')).toBe('10');
  });
});

describe('backoff', () => {
  it('grows, caps, and jitters within [ceiling/2, ceiling]', () => {
    const policy = { minMs: 100, maxMs: 1000 };
    expect(backoffDelay(0, policy, () => 0)).toBe(50);
    expect(backoffDelay(0, policy, () => 1)).toBe(100);
    expect(backoffDelay(2, policy, () => 1)).toBe(400);
    expect(backoffDelay(10, policy, () => 1)).toBe(1000);
    expect(backoffDelay(1000, policy, () => 0.5)).toBe(750);
  });
});

describe('receiver call', () => {
  it('signs like Flux generic-hmac expects', () => {
    // echo -n '{"a":1}' | openssl dgst -sha256 -hmac token
    expect(signBody('{"a":1}', 'token')).toBe('sha256=faee837978e44be8915ecfe70bee314b433634f9e039c865773280f437bc4d61');
  });

  it('takes flux.webhookReceiverUrl from the gateway config only when usable', () => {
    expect(receiverUrlFromConfig({ flux: { webhookReceiverUrl: 'http://receiver.flux-system' } })).toBe('http://receiver.flux-system');
    expect(receiverUrlFromConfig({ flux: { webhookReceiverUrl: '/api/v1/namespaces/f/services/r:80/proxy' } })).toBe(
      '/api/v1/namespaces/f/services/r:80/proxy',
    );
    expect(receiverUrlFromConfig({ flux: { webhookReceiverUrl: 'nonsense' } })).toBeUndefined();
    expect(receiverUrlFromConfig({ flux: 'x' })).toBeUndefined();
    expect(receiverUrlFromConfig({})).toBeUndefined();
  });
});

describe('reconcile.fluxcd.io/requestedAt values', () => {
  const RFC3339_NANO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{9}Z$/;

  it('are RFC 3339 with nanoseconds, near the wall clock', () => {
    const value = new RequestedAtClock().next();
    expect(value).toMatch(RFC3339_NANO);
    expect(Math.abs(Date.parse(value) - Date.now())).toBeLessThan(5000);
    expect(formatRfc3339Nano(1_700_000_000_123_456_789n)).toBe('2023-11-14T22:13:20.123456789Z');
    expect(formatRfc3339Nano(1_700_000_000_000_000_007n)).toBe('2023-11-14T22:13:20.000000007Z');
  });

  it('differ for two requests within the same second, even with a clock that stands still', () => {
    const frozen = new RequestedAtClock(() => 1_700_000_000_500_000_000n);
    const values = [frozen.next(), frozen.next(), frozen.next()];
    expect(new Set(values).size).toBe(3);
    expect(values).toEqual(['2023-11-14T22:13:20.500000000Z', '2023-11-14T22:13:20.500000001Z', '2023-11-14T22:13:20.500000002Z']);
  });

  it('never repeat, and keep increasing when the clock steps back', () => {
    let now = 1_700_000_001_000_000_000n;
    const clock = new RequestedAtClock(() => now);
    const first = clock.next();
    now -= 2_000_000_000n; // NTP steps the clock back two seconds
    const second = clock.next();
    expect(second > first).toBe(true);
    const real = new RequestedAtClock();
    const many = Array.from({ length: 1000 }, () => real.next());
    expect(new Set(many).size).toBe(1000);
    expect([...many].sort()).toEqual(many);
  });
});
