/**
 * What a script calling the admin CLI can rely on: the API's own error message on stderr, in one
 * line, and an exit code per kind of failure (README "Admin CLI").
 */
import net from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { resolveSecrets } from '../../src/embedded-secrets.js';
import { createLogger } from '../../src/log.js';
import { startGateway, useGateway } from '../support/gateway.js';
import { databaseUrl } from '../support/isolation.js';
import { adminCli, runKasgate } from '../support/kasgate-cli.js';
import { startTcpProxy } from '../support/tcp-proxy.js';

const gateway = useGateway();
const kasgate = (...args: string[]) => adminCli(gateway)(...args);

const cleanup: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const step of cleanup.toReversed()) await step();
});

async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

function expectOneLine(stderr: string): void {
  expect(stderr.trim().split('\n')).toHaveLength(1);
  expect(stderr).not.toMatch(/\n\s+at /);
}

describe('exit codes', () => {
  test('4 when the admin token is wrong, with the API message and a hint', async () => {
    const result = await adminCli({ url: gateway.url, adminToken: 'not-the-admin-token' })('agents', 'list');
    expect(result.code).toBe(4);
    expect(result.stdout).toBe('');
    expect(result.stderr).toBe('kasgate: a valid admin token is required: Authorization: Bearer <KASGATE_ADMIN_TOKEN> (check KASGATE_ADMIN_TOKEN)\n');
  });

  test('3 for an agent that does not exist, by name or by id', async () => {
    for (const ref of ['nobody', '00000000-0000-4000-8000-000000000000']) {
      const result = await kasgate('tokens', 'list', ref);
      expect(result.code).toBe(3);
      expect(result.stderr).toMatch(/^kasgate: agent .*(nobody|00000000).* not found/);
      expectOneLine(result.stderr);
    }
  });

  test('5 for a name that is taken; 2 with the API message for a name it rejects', async () => {
    expect((await kasgate('agents', 'create', 'twice', '--config-project', 'g/p')).code).toBe(0);
    const again = await kasgate('agents', 'create', 'twice', '--config-project', 'g/p');
    expect(again.code).toBe(5);
    expect(again.stderr).toBe('kasgate: an agent named "twice" already exists\n');

    const bad = await kasgate('agents', 'create', 'Not Valid', '--config-project', 'g/p');
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/^kasgate: body\.name: must be 1-63 lower-case letters/);
    expectOneLine(bad.stderr);
  });

  test('1 when nothing answers at KASGATE_URL, naming it', async () => {
    const url = `http://127.0.0.1:${await closedPort()}`;
    const result = await runKasgate(['agents', 'list'], { KASGATE_URL: url, KASGATE_ADMIN_TOKEN: gateway.adminToken });
    expect(result.code).toBe(1);
    expect(result.stderr).toBe(`kasgate: cannot reach the gateway at ${url}: connection refused (is KASGATE_URL right?)\n`);
  });

  test('1 when the gateway answers 503 (its database is away), with its message', async () => {
    const direct = new URL(databaseUrl());
    const proxy = await startTcpProxy(direct.hostname, Number(direct.port || 5432));
    const viaProxy = new URL(direct);
    viaProxy.hostname = '127.0.0.1';
    viaProxy.port = String(proxy.port);
    const degraded = await startGateway({ env: { DATABASE_URL: viaProxy.toString() } });
    cleanup.push(() => proxy.close(), () => degraded.close());
    proxy.cut();
    const result = await adminCli(degraded)('agents', 'list');
    expect(result.code).toBe(1);
    expect(result.stderr).toBe('kasgate: the database is unavailable; retry later\n');
  });

  test('2 when KASGATE_URL is not a URL, or no admin token can be found', async () => {
    const badUrl = await runKasgate(['agents', 'list'], { KASGATE_URL: 'kasgate.example.com', KASGATE_ADMIN_TOKEN: 'x'.repeat(20) });
    expect(badUrl.code).toBe(2);
    expect(badUrl.stderr).toMatch(/^kasgate: KASGATE_URL: must be an http\(s\) URL/);

    const empty = await mkdtemp(join(tmpdir(), 'kasgate-cli-'));
    cleanup.push(() => rm(empty, { recursive: true, force: true }));
    const noToken = await runKasgate(['agents', 'list'], { KASGATE_URL: gateway.url, KASGATE_DATA_DIR: empty });
    expect(noToken.code).toBe(2);
    expect(noToken.stderr).toMatch(/^kasgate: KASGATE_ADMIN_TOKEN: not set/);
  });
});

test('next to an embedded gateway, the CLI finds the admin token it generated', async () => {
  // The embedded gateway's own code writes its secrets file; a gateway with that token answers.
  const dataDir = await mkdtemp(join(tmpdir(), 'kasgate-cli-data-'));
  cleanup.push(() => rm(dataDir, { recursive: true, force: true }));
  const { adminToken } = await resolveSecrets(loadConfig({ KASGATE_DATA_DIR: dataDir, LOG_LEVEL: 'silent' }), createLogger('silent'));
  const local = await startGateway({ env: { KASGATE_ADMIN_TOKEN: adminToken } });
  cleanup.push(() => local.close());
  const env = { KASGATE_URL: local.url, KASGATE_DATA_DIR: dataDir };
  const created = await runKasgate(['agents', 'create', 'local', '--config-project', 'me/infra'], env);
  expect(created.code).toBe(0);
  const listed = await runKasgate(['agents', 'list', '--json'], env);
  expect(JSON.parse(listed.stdout).agents.map((a: { name: string }) => a.name)).toEqual(['local']);
});
