/**
 * When `kasgate serve` (or `migrate`) cannot start, it says why in one line naming the variable
 * to change, and exits non-zero: no stack trace unless LOG_LEVEL=debug. The real process, each time.
 */
import net from 'node:net';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, test } from 'vitest';
import { databaseUrl, testSchema } from '../support/isolation.js';
import { spawnKasgate } from '../support/kasgate-process.js';

const cleanup: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const step of cleanup.toReversed()) await step();
});

async function listener(): Promise<net.Server> {
  const server = net.createServer((socket) => socket.destroy());
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanup.push(() => new Promise((resolve) => server.close(resolve)));
  return server;
}

async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

const secrets = { KASGATE_ADMIN_TOKEN: 'admin-token-0123456789', KASGATE_WEBHOOK_SECRETS: 'hook-secret' };

/** Runs to the exit; returns the code and the lines that are not JSON log entries (what a person reads). */
async function failToStart(args: string[], env: Record<string, string>) {
  const cli = spawnKasgate(args, { HOST: '127.0.0.1', LOG_LEVEL: 'warn', ...env });
  const { code } = await cli.exited;
  const lines = cli.lines().filter((l) => l.trim() !== '' && !l.startsWith('{'));
  return { code, lines, output: cli.output() };
}

function expectOneLine(lines: string[], pattern: RegExp): void {
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(pattern);
}

test('database unreachable: one line naming DATABASE_URL, its host and port, never its password', async () => {
  const port = await closedPort();
  for (const command of ['serve', 'migrate']) {
    const { code, lines, output } = await failToStart([command], {
      DATABASE_URL: `postgres://kasgate:hunter2-password@127.0.0.1:${port}/kasgate`,
      ...secrets,
    });
    expect({ command, code }).toEqual({ command, code: 1 });
    expectOneLine(lines, new RegExp(`^kasgate: DATABASE_URL: cannot connect to PostgreSQL at 127\\.0\\.0\\.1:${port}/kasgate: connection refused`));
    expect(output).not.toContain('hunter2');
  }
});

test('the database refuses us (no such database): PostgreSQL says why, in the same one line', async () => {
  const url = new URL(databaseUrl());
  url.pathname = '/kasgate_no_such_database';
  const { code, lines } = await failToStart(['serve'], { DATABASE_URL: url.toString(), ...secrets });
  expect(code).toBe(1);
  expectOneLine(lines, /^kasgate: DATABASE_URL: cannot connect to PostgreSQL at .*\/kasgate_no_such_database: database "kasgate_no_such_database" does not exist$/);
});

test('port in use: one line naming PORT and the port', async () => {
  const busy = await listener();
  const { port } = busy.address() as net.AddressInfo;
  const schema = testSchema();
  cleanup.push(() => schema.drop());
  const { code, lines } = await failToStart(['serve'], {
    PORT: String(port),
    DATABASE_URL: databaseUrl(),
    KASGATE_DB_SCHEMA: schema.schema,
    ...secrets,
  });
  expect(code).toBe(1);
  expectOneLine(lines, new RegExp(`^kasgate: PORT: port ${port} on 127\\.0\\.0\\.1 is already in use by another process`));
});

test('data dir locked by a live process: one line naming KASGATE_DATA_DIR and the pid', async () => {
  const dataDir = await mkdtemp(join(tmpdir(), 'kasgate-locked-'));
  cleanup.push(() => rm(dataDir, { recursive: true, force: true }));
  // This test process is alive, and is not the child: its pid in the lock file means "in use".
  await writeFile(join(dataDir, 'kasgate.pid'), String(process.pid));
  const { code, lines } = await failToStart(['serve'], { KASGATE_DATA_DIR: dataDir, PORT: '0' });
  expect(code).toBe(1);
  expectOneLine(lines, new RegExp(`^kasgate: KASGATE_DATA_DIR: .*kasgate-locked-\\w+ is in use by another kasgate process \\(pid ${process.pid}\\)`));
});

test('bad configuration: one line per variable, exit 2', async () => {
  const { code, lines } = await failToStart(['serve'], { PORT: 'eighty' });
  expect(code).toBe(2);
  expect(lines.join('\n')).toMatch(/PORT: must be a whole number \(got "eighty"\)/);
  expect(lines.join('\n')).not.toMatch(/\n\s+at /);
});

test('LOG_LEVEL=debug adds the stack trace and its cause', async () => {
  const port = await closedPort();
  const { code, lines } = await failToStart(['migrate'], { DATABASE_URL: `postgres://kasgate@127.0.0.1:${port}/kasgate`, LOG_LEVEL: 'debug' });
  expect(code).toBe(1);
  expect(lines[0]).toMatch(/^kasgate: DATABASE_URL: cannot connect/);
  expect(lines.some((l) => /^\s+at /.test(l))).toBe(true);
  expect(lines.some((l) => /ECONNREFUSED/.test(l))).toBe(true);
});
