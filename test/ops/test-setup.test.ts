/**
 * `npm test` with no database: kasgate's own message, naming what to start, is the first and
 * only thing printed, and the run fails (issue 15: it used to follow vitest's misleading
 * "No test files found").
 */
import { execFile } from 'node:child_process';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { expect, test } from 'vitest';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

test('without PostgreSQL the suite says so alone and exits 1', async () => {
  const databaseUrl = `postgres://postgres@127.0.0.1:${await closedPort()}/test`;
  const result = await new Promise<{ code: number | null; output: string }>((resolve) => {
    execFile(
      process.execPath,
      ['node_modules/vitest/vitest.mjs', 'run', 'test/agents/access-rule.test.ts'],
      {
        cwd: ROOT,
        // No container runtime either, even where one answers: the message is what is tested.
        env: { PATH: process.env.PATH ?? '', DATABASE_URL: databaseUrl, KASGATE_TEST_CONTAINERS: 'off', NO_COLOR: '1' },
        timeout: 30_000,
      },
      (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? null) : 0, output: stdout + stderr }),
    );
  });
  expect(result.code).toBe(1);
  expect(result.output.trim()).toBe(
    [
      'kasgate tests: they need PostgreSQL and Redis.',
      `  Nothing answers at ${databaseUrl} (DATABASE_URL).`,
      '  Start them (README "Running the tests"), set DATABASE_URL / REDIS_URL, or run a Docker',
      '  engine for testcontainers (KASGATE_TEST_CONTAINERS=off).',
    ].join('\n'),
  );
}, 40_000);
