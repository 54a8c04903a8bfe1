/**
 * `kasgate help`, `--help` on every command and `--version` only print: no data dir appears,
 * no database or Redis is contacted, no port is taken. Unknown commands and options exit 2.
 */
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { runKasgate, type CliResult } from '../support/kasgate-cli.js';

const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };

/** A TCP listener that only counts who connects: stands for Postgres, Redis, and the port serve would take. */
async function connectionCounter(): Promise<{ port: number; connections: () => number; close: () => Promise<void> }> {
  let count = 0;
  const server = net.createServer((socket) => {
    count++;
    socket.destroy();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    connections: () => count,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

let tmp: string;
let dataDir: string;
let database: Awaited<ReturnType<typeof connectionCounter>>;
let redis: Awaited<ReturnType<typeof connectionCounter>>;
let taken: Awaited<ReturnType<typeof connectionCounter>>;

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'kasgate-help-'));
  dataDir = join(tmp, 'data'); // must never be created
  [database, redis, taken] = await Promise.all([connectionCounter(), connectionCounter(), connectionCounter()]);
});

afterAll(async () => {
  await Promise.all([database.close(), redis.close(), taken.close()]);
  await rm(tmp, { recursive: true, force: true });
});

/** An environment in which anything that starts would leave a trace. */
const sideEffectEnv = (embedded: boolean): Record<string, string> => ({
  KASGATE_DATA_DIR: dataDir,
  PORT: String(taken.port),
  HOST: '127.0.0.1',
  ...(embedded ? {} : { DATABASE_URL: `postgres://kasgate@127.0.0.1:${database.port}/kasgate`, REDIS_URL: `redis://127.0.0.1:${redis.port}` }),
  KASGATE_URL: `http://127.0.0.1:${taken.port}`,
  KASGATE_ADMIN_TOKEN: 'admin-token-for-help-tests',
});

async function inBatches<T, R>(items: T[], size: number, run: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = [];
  for (let i = 0; i < items.length; i += size) results.push(...(await Promise.all(items.slice(i, i + size).map(run))));
  return results;
}

function expectNoTrace(): void {
  expect({ dataDirCreated: existsSync(dataDir), database: database.connections(), redis: redis.connections(), gateway: taken.connections() }).toEqual({
    dataDirCreated: false,
    database: 0,
    redis: 0,
    gateway: 0,
  });
}

describe('help and version', () => {
  let top: CliResult;
  let commands: string[];

  beforeAll(async () => {
    top = await runKasgate(['help'], sideEffectEnv(false));
    // Every command the top-level help lists, e.g. "serve", "agents create".
    commands = [...top.stdout.matchAll(/^ {2}([a-z]+(?: [a-z]+)?) {3,}\S/gm)].map((m) => m[1]!);
  });

  test('kasgate help lists every command and the exit codes', () => {
    expect(top.code).toBe(0);
    expect(top.stderr).toBe('');
    expect(commands).toEqual(
      expect.arrayContaining([
        'serve',
        'migrate',
        'agent',
        'agents create',
        'agents list',
        'agents show',
        'agents delete',
        'tokens create',
        'tokens list',
        'tokens revoke',
        'grants set',
        'grants show',
        'events list',
      ]),
    );
    expect(top.stdout).toMatch(/Exit codes:[\s\S]*3 {3}not found[\s\S]*4 {3}unauthorized/);
    expectNoTrace();
  });

  test('--version and -V print the package version', async () => {
    for (const flag of ['--version', '-V']) {
      const result = await runKasgate([flag], sideEffectEnv(false));
      expect(result).toMatchObject({ code: 0, stdout: `kasgate ${pkg.version}\n`, stderr: '' });
    }
  });

  test('--help on every command prints its usage and has no side effect, embedded or not', async () => {
    // Embedded, serve would create the data dir; on Postgres, serve and migrate would connect.
    const runs = [
      ...commands.map((command) => ({ args: [...command.split(' '), '--help'], embedded: true })),
      { args: ['serve', '--help'], embedded: false },
      { args: ['migrate', '--help'], embedded: false },
      ...['serve', 'agents create', 'events list'].map((command) => ({ args: ['help', ...command.split(' ')], embedded: true })),
    ];
    const results = await inBatches(runs, 3, async (run) => ({ run, result: await runKasgate(run.args, sideEffectEnv(run.embedded)) }));
    for (const { run, result } of results) {
      const command = run.args.filter((a) => a !== 'help' && !a.startsWith('-')).join(' ');
      const args = run.args.join(' ');
      expect({ args, code: result.code, stderr: result.stderr, usage: result.stdout.split('\n')[0] }).toEqual({
        args,
        code: 0,
        stderr: '',
        usage: expect.stringMatching(new RegExp(`^usage: kasgate ${command}( |$)`)),
      });
      expect(result.stdout).toMatch(/-h, --help/);
    }
    expectNoTrace();
  }, 120_000);

  test('--help wins over anything else on the line, even a bad option or a missing argument', async () => {
    for (const args of [
      ['serve', '--port', '1', '--help'],
      ['migrate', '-h'],
      ['agents', 'create', '--help'],
      ['tokens', 'revoke', 'prod', '--bogus', '-h'],
    ]) {
      const result = await runKasgate(args, sideEffectEnv(false));
      expect({ args, code: result.code, usage: result.stdout.split('\n')[0] }).toEqual({
        args,
        code: 0,
        usage: expect.stringMatching(/^usage: kasgate /),
      });
    }
    expectNoTrace();
  });

  test('a group alone asks which command; with --help it lists them', async () => {
    const bare = await runKasgate(['agents'], sideEffectEnv(false));
    expect(bare.code).toBe(2);
    expect(bare.stderr).toMatch(/missing command: create, list, show or delete/);
    const help = await runKasgate(['tokens', '--help'], sideEffectEnv(false));
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/^usage: kasgate tokens <create\|list\|revoke>/);
  });
});

describe('mistakes exit 2 and say what was wrong', () => {
  test('an unknown command', async () => {
    const result = await runKasgate(['deploy', 'everything'], sideEffectEnv(false));
    expect(result.code).toBe(2);
    expect(result.stdout).toBe('');
    expect(result.stderr).toBe('kasgate: unknown command "deploy" (kasgate help shows the usage)\n');
  });

  test('an unknown subcommand, an unknown option, a missing argument, an extra argument', async () => {
    const cases: [string[], RegExp][] = [
      [['agents', 'rename', 'prod'], /^kasgate agents: unknown command "agents rename"/],
      [['agents', 'list', '--frobnicate'], /^kasgate agents list: unknown option --frobnicate/],
      [['agents', 'show'], /^kasgate agents show: missing <agent>/],
      [['agents', 'create', 'prod'], /^kasgate agents create: missing --config-project <path>/],
      [['agents', 'delete', 'a', 'b'], /^kasgate agents delete: unexpected argument "b"/],
      [['serve', '--port=80'], /^kasgate serve: unknown option --port/],
      [['--bogus'], /^kasgate: unknown option --bogus/],
    ];
    const results = await inBatches(cases, 3, async ([args]) => runKasgate(args, sideEffectEnv(false)));
    results.forEach((result, i) => {
      const [args, message] = cases[i]!;
      expect({ args, code: result.code, lines: result.stderr.trim().split('\n') }).toEqual({
        args,
        code: 2,
        lines: [expect.stringMatching(message)],
      });
    });
    expectNoTrace();
  });

  test('no command at all prints the usage on stderr and exits 2', async () => {
    const result = await runKasgate([], sideEffectEnv(false));
    expect(result.code).toBe(2);
    expect(result.stdout).toBe('');
    expect(result.stderr).toMatch(/^usage: kasgate <command>/);
  });
});
