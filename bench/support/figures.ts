/** What a scenario measures: named figures, one value per target, and the ratio targets. */
import type { TargetKind } from './servers.js';

export interface Figure {
  scenario: string;
  name: string;
  unit: string;
  better: 'higher' | 'lower';
  /** Per target: the value reported (see `aggregate`). */
  values: Partial<Record<TargetKind, number>>;
  /** Per target: every round's value. */
  rounds: Partial<Record<TargetKind, number[]>>;
  /** `best`: the best round (noise on a shared machine only ever makes a figure worse); `sum`: counts, over all rounds. */
  aggregate: 'best' | 'sum';
  /** The target for kasgate / the Redis floor, when it sets one. */
  target?: { max?: number; min?: number };
  /** Shown but not compared (counts of errors, context). */
  informational?: boolean;
}

export interface FigureSpec {
  key: string;
  name: string;
  unit: string;
  better: Figure['better'];
  target?: Figure['target'];
  informational?: boolean;
}

/** Builds the figures of a scenario from every round's measurements of every target. */
export function figuresOf(scenario: string, specs: FigureSpec[], results: Map<TargetKind, Record<string, number>[]>): Figure[] {
  return specs.map((spec) => {
    const f: Figure = {
      scenario,
      name: spec.name,
      unit: spec.unit,
      better: spec.better,
      values: {},
      rounds: {},
      aggregate: spec.unit === 'count' ? 'sum' : 'best',
      ...(spec.target ? { target: spec.target } : {}),
      ...(spec.informational ? { informational: true } : {}),
    };
    for (const [kind, rounds] of results) {
      const values = rounds.map((r) => r[spec.key]).filter((v): v is number => v !== undefined);
      if (values.length === 0) continue;
      f.rounds[kind] = values;
      const finite = values.filter(Number.isFinite);
      if (f.aggregate === 'sum') f.values[kind] = values.reduce((a, b) => a + b, 0);
      else if (finite.length === 0) f.values[kind] = NaN;
      else f.values[kind] = spec.better === 'higher' ? Math.max(...finite) : Math.min(...finite);
    }
    return f;
  });
}

export function ratio(f: Figure, floor: TargetKind): number | null {
  const k = f.values.kasgate;
  const base = f.values[floor];
  if (k === undefined || base === undefined || !Number.isFinite(k) || !Number.isFinite(base) || base === 0) return null;
  return k / base;
}

export function meetsTarget(f: Figure): boolean | null {
  if (!f.target) return null;
  const r = ratio(f, 'floor-redis');
  if (r === null) return false;
  if (f.target.min !== undefined && r < f.target.min) return false;
  if (f.target.max !== undefined && r > f.target.max) return false;
  return true;
}
