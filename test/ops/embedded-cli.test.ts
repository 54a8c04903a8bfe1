/**
 * The newcomer's path, through the real command: `kasgate serve` with no set-up runs embedded,
 * generates its secrets once, survives a restart, stops on SIGTERM, and never logs a secret.
 */
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, test } from 'vitest';
import { spawnKasgate, type KasgateProcess } from '../support/kasgate-process.js';
import { connectAgent } from '../support/agent-client.js';
import { fixtures } from '../support/fixtures.js';

const dirs: string[] = [];
afterAll(async () => {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

async function serve(dataDir: string): Promise<{ cli: KasgateProcess; url: string }> {
  const cli = spawnKasgate(['serve'], { KASGATE_DATA_DIR: dataDir, PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'debug' });
  const listening = await cli.waitForLog(/^kasgate listening$/, 30_000);
  return { cli, url: `http://127.0.0.1:${String(listening.port)}` };
}

async function stop(cli: KasgateProcess): Promise<number | null> {
  const { code, afterSignalMs } = await cli.stop();
  expect(afterSignalMs).toBeLessThan(10_000);
  return code;
}

test('embedded: secrets generated once, the agent survives a restart, SIGTERM exits 0, nothing secret is logged', async () => {
  const dataDir = await mkdtemp(join(tmpdir(), 'kasgate-embedded-'));
  dirs.push(dataDir);

  const first = await serve(dataDir);
  const secretsPath = join(dataDir, 'secrets.json');
  const secrets = JSON.parse(await readFile(secretsPath, 'utf8')) as { adminToken: string; webhookSecret: string };
  expect((await stat(secretsPath)).mode & 0o777).toBe(0o600);
  expect(first.cli.output()).toContain(secretsPath);

  const admin = { authorization: `Bearer ${secrets.adminToken}`, 'content-type': 'application/json' };
  expect((await fetch(`${first.url}/healthz`)).status).toBe(200);
  const created = await fetch(`${first.url}/api/v1/agents`, {
    method: 'POST',
    headers: admin,
    body: JSON.stringify({ name: 'survivor', configProject: 'mike/diaspora' }),
  });
  expect(created.status).toBe(201);
  const { agent, token } = (await created.json()) as { agent: { id: string }; token: { token: string } };

  const socket = await connectAgent(first.url.replace('http', 'ws'), token.token);
  await socket.subscribe(['mike/diaspora']);
  const hook = await fetch(`${first.url}/webhooks/gitlab`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-gitlab-token': secrets.webhookSecret, 'x-gitlab-event': 'Push Hook' },
    body: fixtures.push.raw,
  });
  expect(hook.status).toBe(202);
  await socket.waitFor((f) => f.type === 'push');

  expect(await stop(first.cli)).toBe(0);
  expect((await socket.closed).code).toBe(1012);

  const second = await serve(dataDir);
  // The same secrets, not new ones.
  expect(JSON.parse(await readFile(secretsPath, 'utf8'))).toEqual(secrets);
  const fetched = await fetch(`${second.url}/api/v1/agents/${agent.id}`, { headers: admin });
  expect(fetched.status).toBe(200);
  expect(await fetched.json()).toMatchObject({ name: 'survivor' });
  const events = (await (await fetch(`${second.url}/api/v1/events`, { headers: admin })).json()) as { events: unknown[] };
  expect(events.events).toHaveLength(1);
  const again = await connectAgent(second.url.replace('http', 'ws'), token.token);
  await again.close();
  expect(await stop(second.cli)).toBe(0);

  const logs = first.cli.output() + second.cli.output();
  for (const secret of [secrets.adminToken, secrets.webhookSecret, token.token, token.token.slice(8)]) {
    expect(logs).not.toContain(secret);
  }
  expect(logs).toMatch(/only one replica is supported/);
}, 90_000);

test('a second process on the same data dir is refused, naming KASGATE_DATA_DIR', async () => {
  const dataDir = await mkdtemp(join(tmpdir(), 'kasgate-embedded-'));
  dirs.push(dataDir);
  const first = await serve(dataDir);
  const second = spawnKasgate(['serve'], { KASGATE_DATA_DIR: dataDir, PORT: '0', HOST: '127.0.0.1' });
  const { code } = await second.exited;
  expect(code).not.toBe(0);
  expect(second.output()).toContain('KASGATE_DATA_DIR');
  expect(await stop(first.cli)).toBe(0);
}, 60_000);
