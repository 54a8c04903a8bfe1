/**
 * The Makefile rebuilds dist/ when a source changed, and only then: running the gateway (which
 * lets node-pg-migrate's jiti write node_modules/.cache) or the tests (vitest writes
 * node_modules/.vite-temp) changes nothing that `make run` depends on. The real Makefile, in a
 * scratch copy of the project's shape whose build only counts how often it ran.
 */
import { execFile } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, expect, test } from 'vitest';

const run = promisify(execFile);
const hasMake = await run('make', ['--version']).then(
  () => true,
  () => false,
);
const dirs: string[] = [];
afterAll(async () => {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

test.skipIf(!hasMake)('a second make build with nothing changed does nothing; a changed source rebuilds', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'kasgate-make-'));
  dirs.push(dir);
  await copyFile(new URL('../../Makefile', import.meta.url), join(dir, 'Makefile'));
  const build = "require('fs').mkdirSync('dist',{recursive:true});require('fs').appendFileSync('builds.log','build\\n')";
  await writeFile(join(dir, 'package.json'), JSON.stringify({ name: 'scratch', private: true, scripts: { build: `node -e "${build}"` } }));
  await writeFile(join(dir, 'package-lock.json'), '{}');
  await writeFile(join(dir, 'tsconfig.json'), '{}');
  await writeFile(join(dir, 'tsconfig.build.json'), '{}');
  await mkdir(join(dir, 'src'));
  await writeFile(join(dir, 'src', 'main.ts'), 'export {};\n');
  // Installed already (npm ci is not what this test is about), after every file above.
  const past = new Date(Date.now() - 60_000);
  for (const file of ['package.json', 'package-lock.json', 'tsconfig.json', 'tsconfig.build.json', 'src/main.ts']) {
    await utimes(join(dir, file), past, past);
  }
  await mkdir(join(dir, 'node_modules'));
  await writeFile(join(dir, 'node_modules', '.kasgate-installed'), '');

  const make = (target: string) => run('make', ['--no-print-directory', target], { cwd: dir });
  const builds = async () => (await readFile(join(dir, 'builds.log'), 'utf8')).trim().split('\n').length;

  await make('build');
  expect(await builds()).toBe(1);

  // What running the gateway and the tests leave behind.
  await mkdir(join(dir, 'node_modules', '.cache', 'jiti'), { recursive: true });
  await mkdir(join(dir, 'node_modules', '.vite-temp'));
  const second = await make('build');
  expect(second.stdout).toMatch(/Nothing to be done|is up to date/);
  expect(await builds()).toBe(1);

  const future = new Date(Date.now() + 5_000);
  await utimes(join(dir, 'src', 'main.ts'), future, future);
  await make('build');
  expect(await builds()).toBe(2);
});
