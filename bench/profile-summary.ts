/**
 * Reads a V8 CPU profile (`node --cpu-prof`) and prints where the time went: self time by
 * function and by module (kasgate's own files, each npm package, node internals), optionally only
 * for samples inside a time window (the runner records each scenario's window on the same
 * monotonic clock the profiler uses).
 *
 *   npx tsx bench/profile-summary.ts <file.cpuprofile> [startUs endUs]
 */
import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { ROOT } from './support/servers.js';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  samples: number[];
  timeDeltas: number[];
}

const TOP = 25;

/** Where a function lives: `src/fanout/hub.ts`, `pkg:fastify`, `node:internal/...`, or a V8 pseudo-frame. */
function moduleOf(url: string, functionName: string): string {
  if (!url) return functionName.startsWith('(') ? functionName : '(native)';
  const path = url.startsWith('file://') ? decodeURIComponent(new URL(url).pathname) : url;
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(path);
  if (pkg) return `pkg:${pkg[1]}`;
  if (path.startsWith(ROOT)) return path.slice(ROOT.length);
  return path;
}

function bar(share: number): string {
  return `${(share * 100).toFixed(1).padStart(5)}%`;
}

export function summarizeProfile(file: string, window?: { startUs: number; endUs: number }): string | undefined {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const selfUs = new Map<number, number>();
  let t = profile.startTime;
  let total = 0;
  profile.samples.forEach((id, i) => {
    t += profile.timeDeltas[i] ?? 0;
    if (window && (t < window.startUs || t > window.endUs)) return;
    const delta = profile.timeDeltas[i + 1] ?? 0;
    selfUs.set(id, (selfUs.get(id) ?? 0) + delta);
    total += delta;
  });
  if (total === 0) return undefined;

  const parent = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);
  const label = (frame: ProfileNode['callFrame']) => {
    const where = moduleOf(frame.url, frame.functionName);
    return `${frame.functionName || '(anonymous)'}  ${where}${frame.lineNumber > 0 ? `:${frame.lineNumber + 1}` : ''}`;
  };
  // Total (inclusive) time of kasgate's own functions: each sample counts once for every src/ frame on its stack.
  const inclusive = new Map<string, number>();
  for (const [id, us] of selfUs) {
    const seen = new Set<string>();
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const frame = byId.get(at)!.callFrame;
      const where = moduleOf(frame.url, frame.functionName);
      if (!where.startsWith('src/') && !where.startsWith('dist/')) continue;
      const name = label(frame);
      if (seen.has(name)) continue;
      seen.add(name);
      inclusive.set(name, (inclusive.get(name) ?? 0) + us);
    }
  }

  const byFunction = new Map<string, number>();
  const byModule = new Map<string, number>();
  let idle = 0;
  for (const [id, us] of selfUs) {
    const frame = byId.get(id)!.callFrame;
    if (frame.functionName === '(idle)') {
      idle += us;
      continue;
    }
    const where = moduleOf(frame.url, frame.functionName);
    const name = label(frame);
    byFunction.set(name, (byFunction.get(name) ?? 0) + us);
    byModule.set(where, (byModule.get(where) ?? 0) + us);
  }
  const busy = total - idle;
  const top = (map: Map<string, number>) =>
    [...map]
      .sort((a, b) => b[1] - a[1])
      .slice(0, TOP)
      .map(([name, us]) => `  ${bar(us / busy)}  ${(us / 1000).toFixed(0).padStart(6)} ms  ${name}`)
      .join('\n');
  return [
    `  ${(total / 1e6).toFixed(1)} s sampled, ${bar(busy / total).trim()} busy; shares below are of busy time`,
    '  self time by function:',
    top(byFunction),
    '  self time by module:',
    top(byModule),
    "  total time of kasgate's own functions (src/, or dist/ when built), callees included:",
    top(inclusive),
  ].join('\n');
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const [file, start, end] = process.argv.slice(2);
  if (!file) {
    console.error('usage: tsx bench/profile-summary.ts <file.cpuprofile> [startUs endUs]');
    process.exit(2);
  }
  console.log(summarizeProfile(file, start && end ? { startUs: Number(start), endUs: Number(end) } : undefined) ?? 'no samples');
}
