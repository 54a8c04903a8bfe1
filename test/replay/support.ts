/** Small helpers shared by the replay, catch-up and chaos tests. */
import { queryInSchema } from '../support/isolation.js';
import type { LoggedPush } from './entitlement.js';

/** The value of an unlabelled counter or gauge on a gateway's /metrics page. */
export async function readMetric(baseUrl: string, name: string): Promise<number> {
  const text = await (await fetch(`${baseUrl}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  if (!line) throw new Error(`metric ${name} not exposed`);
  return Number(line.slice(name.length + 1));
}

/** Every event in the log, as the oracle needs it. */
export async function loggedEvents(schema: string): Promise<LoggedPush[]> {
  const rows = await queryInSchema<{ id: string; project_path: string; visibility: number | null }>(
    schema,
    'SELECT id::text, project_path, visibility FROM push_events ORDER BY push_events.id',
  );
  return rows.map((r) => ({ id: r.id, path: r.project_path, visibility: r.visibility }));
}

/** Runs `task(i)` for i in [0, count) with at most `lanes` at once. */
export async function inLanes(count: number, lanes: number, task: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: lanes }, async () => {
      while (next < count) await task(next++);
    }),
  );
}

/** A small deterministic PRNG (mulberry32): the same seed draws the same sequence. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export const VISIBILITIES: (number | null)[] = [20, 10, 0, null];
