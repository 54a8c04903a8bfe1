/** The run's output: a table on stdout and a JSON file under bench/results/. */
import { availableParallelism, cpus, totalmem } from 'node:os';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { meetsTarget, ratio, type Figure } from './figures.js';
import { round } from './stats.js';
import { RESULTS_DIR, type TargetKind } from './servers.js';
import type { BenchOptions } from './options.js';
import { sourceIdentity } from './source.js';
import type { ProfileWindow } from '../scenarios/context.js';

const KINDS: TargetKind[] = ['kasgate', 'floor-redis', 'floor-memory'];

function show(value: number | null | undefined): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return '–';
  if (Math.abs(value) >= 100) return value.toFixed(0);
  if (Math.abs(value) >= 10) return value.toFixed(1);
  return value.toFixed(2);
}

function targetText(f: Figure): string {
  if (!f.target) return '';
  return f.target.min !== undefined ? `≥ ${f.target.min}` : `≤ ${f.target.max}`;
}

export function table(figures: Figure[]): string {
  const header = ['scenario', 'figure', 'unit', ...KINDS, 'k/redis', 'k/memory', 'target', 'met'];
  const rows = figures.map((f) => {
    const met = meetsTarget(f);
    return [
      f.scenario,
      f.name,
      f.unit,
      ...KINDS.map((k) => show(f.values[k])),
      f.informational ? '' : show(ratio(f, 'floor-redis')),
      f.informational ? '' : show(ratio(f, 'floor-memory')),
      targetText(f),
      met === null ? '' : met ? 'yes' : 'NO',
    ];
  });
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i < 3 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

/** The README's Markdown table of the same figures. */
export function markdown(figures: Figure[]): string {
  const head = '| scenario | figure | kasgate | floor (Redis) | floor (in-process) | kasgate / Redis floor | kasgate / in-process floor | target |';
  const rule = '| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |';
  const rows = figures.map((f) => {
    const met = meetsTarget(f);
    const target = f.target ? `${targetText(f)} ${met ? '✓' : '✗'}` : '';
    const r = (k: TargetKind) => (f.informational ? '' : show(ratio(f, k)));
    return `| ${f.scenario} | ${f.name} (${f.unit}) | ${KINDS.map((k) => show(f.values[k])).join(' | ')} | ${r('floor-redis')} | ${r('floor-memory')} | ${target} |`;
  });
  return [head, rule, ...rows].join('\n');
}

export function writeResults(
  figures: Figure[],
  extra: { options: BenchOptions; startedAt: Date; windows: ProfileWindow[]; notes: string[] },
): string {
  mkdirSync(RESULTS_DIR, { recursive: true });
  const finishedAt = new Date();
  const file = join(RESULTS_DIR, `bench-${extra.startedAt.toISOString().replace(/[:.]/g, '-')}.json`);
  const json = {
    startedAt: extra.startedAt.toISOString(),
    finishedAt: finishedAt.toISOString(),
    durationSeconds: round((finishedAt.getTime() - extra.startedAt.getTime()) / 1000, 1),
    machine: {
      cores: availableParallelism(),
      cpuModel: cpus()[0]?.model ?? 'unknown',
      memoryGiB: round(totalmem() / 2 ** 30, 1),
      node: process.version,
    },
    kasgate: sourceIdentity(),
    options: extra.options,
    figures: figures.map((f) => ({
      scenario: f.scenario,
      name: f.name,
      unit: f.unit,
      better: f.better,
      values: Object.fromEntries(Object.entries(f.values).map(([k, v]) => [k, round(v, 3)])),
      aggregate: f.aggregate,
      rounds: Object.fromEntries(Object.entries(f.rounds).map(([k, vs]) => [k, vs.map((v) => round(v, 3))])),
      ratios: {
        kasgateOverRedisFloor: ratio(f, 'floor-redis') === null ? null : round(ratio(f, 'floor-redis')!, 3),
        kasgateOverMemoryFloor: ratio(f, 'floor-memory') === null ? null : round(ratio(f, 'floor-memory')!, 3),
      },
      target: f.target ?? null,
      met: meetsTarget(f),
      informational: f.informational ?? false,
    })),
    profileWindows: extra.windows,
    notes: extra.notes,
  };
  writeFileSync(file, `${JSON.stringify(json, null, 2)}\n`);
  return file;
}
