/**
 * kasgate's own view of a window, from its /metrics before and after: how long the ingest took
 * (most of it the Postgres append), how big the group commits were, and how long a stored event
 * took to reach the sockets (the doorbell hop and the dispatch). It explains a ratio; the
 * ratios themselves only use what the driver measured.
 */
import type { FigureSpec } from './figures.js';

const SERIES = {
  ingestSum: 'kasgate_webhook_ingest_duration_seconds_sum',
  ingestCount: 'kasgate_webhook_ingest_duration_seconds_count',
  batchSum: 'kasgate_event_append_batch_size_sum',
  batchCount: 'kasgate_event_append_batch_size_count',
  fanoutSum: 'kasgate_fanout_latency_seconds_sum',
  fanoutCount: 'kasgate_fanout_latency_seconds_count',
} as const;

const HISTOGRAMS = { ingest: 'kasgate_webhook_ingest_duration_seconds', fanout: 'kasgate_fanout_latency_seconds' } as const;

interface Snapshot {
  sums: Record<keyof typeof SERIES, number>;
  /** Cumulative bucket counts by upper bound (seconds), per histogram. */
  buckets: Record<keyof typeof HISTOGRAMS, Map<number, number>>;
}

async function snapshot(url: string): Promise<Snapshot> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const values = new Map<string, number>();
  const buckets = { ingest: new Map<number, number>(), fanout: new Map<number, number>() };
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const [name, value] = line.split(' ');
    if (!name || !value) continue;
    values.set(name, Number(value));
    for (const [key, histogram] of Object.entries(HISTOGRAMS) as [keyof typeof HISTOGRAMS, string][]) {
      const bound = new RegExp(`^${histogram}_bucket\\{le="([^"]+)"\\}$`).exec(name)?.[1];
      if (bound) buckets[key].set(bound === '+Inf' ? Infinity : Number(bound), Number(value));
    }
  }
  return {
    sums: Object.fromEntries(Object.entries(SERIES).map(([key, name]) => [key, values.get(name) ?? 0])) as Snapshot['sums'],
    buckets,
  };
}

/** The upper bound of the bucket holding the quantile, in ms, over the window. */
function quantileMs(before: Snapshot[], after: Snapshot[], histogram: keyof typeof HISTOGRAMS, q: number): number {
  const counts = new Map<number, number>();
  after.forEach((snap, i) => {
    for (const [bound, count] of snap.buckets[histogram]) {
      counts.set(bound, (counts.get(bound) ?? 0) + count - (before[i]!.buckets[histogram].get(bound) ?? 0));
    }
  });
  const bounds = [...counts.keys()].sort((a, b) => a - b);
  const total = counts.get(Infinity) ?? 0;
  const bound = bounds.find((b) => counts.get(b)! >= q * total);
  return bound === undefined ? NaN : bound * 1000;
}

export interface Internals {
  ingestMs: number;
  /** Bucket upper bound: "99 % of ingests took at most this". */
  ingestP99Ms: number;
  batchSize: number;
  storedToSocketMs: number;
  storedToSocketP99Ms: number;
}

/** Starts a window on the replicas' metrics; the returned function closes it. */
export async function internalsWindow(urls: string[]): Promise<() => Promise<Internals>> {
  const before = await Promise.all(urls.map(snapshot));
  return async () => {
    const after = await Promise.all(urls.map(snapshot));
    const delta = (key: keyof typeof SERIES) => after.reduce((sum, s, i) => sum + s.sums[key] - before[i]!.sums[key], 0);
    const mean = (sum: keyof typeof SERIES, count: keyof typeof SERIES) => delta(sum) / delta(count);
    return {
      ingestMs: mean('ingestSum', 'ingestCount') * 1000,
      ingestP99Ms: quantileMs(before, after, 'ingest', 0.99),
      batchSize: mean('batchSum', 'batchCount'),
      storedToSocketMs: mean('fanoutSum', 'fanoutCount') * 1000,
      storedToSocketP99Ms: quantileMs(before, after, 'fanout', 0.99),
    };
  };
}

export function formatInternals(i: Internals): string {
  return (
    `kasgate says: ingest ${i.ingestMs.toFixed(2)} ms mean (p99 ≤ ${i.ingestP99Ms} ms), group commits of ${i.batchSize.toFixed(1)}, ` +
    `stored → sockets ${i.storedToSocketMs.toFixed(2)} ms mean (p99 ≤ ${i.storedToSocketP99Ms} ms)`
  );
}

/** The internals as (informational, kasgate-only) figures. */
export const INTERNAL_FIGURES: FigureSpec[] = [
  { key: 'ingestMs', name: 'kasgate: ingest mean (its metrics)', unit: 'ms', better: 'lower', informational: true },
  { key: 'ingestP99Ms', name: 'kasgate: ingest p99 ≤ (bucket)', unit: 'ms', better: 'lower', informational: true },
  { key: 'batchSize', name: 'kasgate: group commit size', unit: 'events', better: 'higher', informational: true },
  { key: 'storedToSocketMs', name: 'kasgate: stored → sockets mean', unit: 'ms', better: 'lower', informational: true },
  { key: 'storedToSocketP99Ms', name: 'kasgate: stored → sockets p99 ≤', unit: 'ms', better: 'lower', informational: true },
];
