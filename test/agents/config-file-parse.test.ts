import { describe, expect, test } from 'vitest';
import { mergeConfig, parseConfigFile, parseRotate } from '../../src/agents/config-file/parse.js';

describe('the config file parser', () => {
  test('rotate: s, m, h, d; nothing else', () => {
    expect(parseRotate('45s')).toBe(45);
    expect(parseRotate('30m')).toBe(1800);
    expect(parseRotate('12h')).toBe(43_200);
    expect(parseRotate('90d')).toBe(7_776_000);
    for (const bad of ['0s', '1w', '1.5h', '-1d', 'd', '', '10']) expect(parseRotate(bad)).toBeUndefined();
  });

  test('flux_access: defaults (90 days, read_repository), refused entries listed, bad ones are errors', () => {
    const ok = parseConfigFile(
      'flux_access:\n  projects:\n    - id: acme/app\n      secret_name: app-git\n      namespaces: [apps, apps]\n    - id: other/app\n      secret_name: x\n      namespaces: [a]\n',
      'acme/cfg',
    );
    expect(ok).toEqual({
      ok: true,
      file: {
        config: {},
        fluxAccess: { rotateSeconds: 90 * 86_400, entries: [{ kind: 'project', path: 'acme/app', role: 'read_repository', secretName: 'app-git', namespaces: ['apps'] }] },
        refused: ['other/app'],
      },
    });
    const bad = parseConfigFile('flux_access:\n  rotate: 1w\n  projects:\n    - id: acme/app\n      secret_name: Not_A_Name\n      namespaces: []\n', 'acme/cfg');
    expect(bad).toEqual({ ok: false, error: expect.stringMatching(/flux_access\.rotate.*flux_access\.projects\.0\.secret_name/s) });
  });

  test("GitLab's own keys are accepted and left out; an empty file is an empty config; other keys and shapes are errors", () => {
    const gitlabs = parseConfigFile('gitops: {}\nci_access: {}\nuser_access: {}\nobservability: {}\ncontainer_scanning: {}\nremote_development: {}\n', 'a/b');
    expect(gitlabs.ok && gitlabs.file.config).toEqual({});
    expect(parseConfigFile('', 'a/b')).toMatchObject({ ok: true, file: { config: {} } });
    expect(parseConfigFile('- a\n- b\n', 'a/b')).toEqual({ ok: false, error: 'the file must be a YAML mapping' });
    expect(parseConfigFile('one: 1\ntwo: 2\n', 'a/b')).toEqual({ ok: false, error: 'unknown keys: one, two' });
    expect(parseConfigFile('a: [\n', 'a/b')).toMatchObject({ ok: false, error: expect.stringMatching(/^bad YAML/) });
  });

  test('the file overrides the stored config key by key, nested mappings too', () => {
    expect(mergeConfig({ flux: { a: 1, webhookReceiverUrl: 'old' }, x: 1 }, { flux: { webhookReceiverUrl: 'new' } })).toEqual({
      flux: { a: 1, webhookReceiverUrl: 'new' },
      x: 1,
    });
    expect(mergeConfig({ x: 1 }, null)).toEqual({ x: 1 });
  });
});
