/**
 * Node versions agree (issue 10, item 7): every installed package's `engines.node` admits the
 * Node that runs the suite, as npm checks it for its EBADENGINE warning, and so does kasgate's own.
 */
import { readdirSync, readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import semver from 'semver';
import { expect, test } from 'vitest';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** Every package directory under a node_modules directory, nested ones included. */
function packagesUnder(nodeModules: string): string[] {
  if (!existsSync(nodeModules)) return [];
  const found: string[] = [];
  for (const entry of readdirSync(nodeModules, { withFileTypes: true })) {
    if (!entry.isDirectory() || entry.name.startsWith('.')) continue;
    const dirs = entry.name.startsWith('@')
      ? readdirSync(join(nodeModules, entry.name), { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => join(nodeModules, entry.name, e.name))
      : [join(nodeModules, entry.name)];
    for (const dir of dirs) {
      if (existsSync(join(dir, 'package.json'))) found.push(dir);
      found.push(...packagesUnder(join(dir, 'node_modules')));
    }
  }
  return found;
}

interface Manifest {
  name?: string;
  version?: string;
  engines?: { node?: unknown };
}

test('every installed package supports this Node, so that npm ci prints no EBADENGINE warning', () => {
  const packages = packagesUnder(join(ROOT, 'node_modules'));
  expect(packages.length).toBeGreaterThan(100);
  const unsupported = packages.flatMap((dir) => {
    const manifest = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as Manifest;
    const wanted = manifest.engines?.node;
    if (typeof wanted !== 'string') return [];
    return semver.satisfies(process.version, wanted, { includePrerelease: true }) ? [] : [`${manifest.name}@${manifest.version} wants node ${wanted}`];
  });
  expect({ node: process.version, unsupported }).toEqual({ node: process.version, unsupported: [] });
});

test("kasgate's own engines.node admits this Node", () => {
  const manifest = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as Manifest;
  expect(semver.satisfies(process.version, String(manifest.engines?.node))).toBe(true);
});
