/** Small statistics over samples. */
export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank]!;
}

export function summarize(samples: number[]): { p50: number; p99: number; max: number; count: number } {
  const sorted = Float64Array.from(samples).sort();
  const values = Array.from(sorted);
  return { p50: percentile(values, 50), p99: percentile(values, 99), max: values.at(-1) ?? NaN, count: values.length };
}

export const round = (value: number, digits = 2): number => (Number.isFinite(value) ? Number(value.toFixed(digits)) : value);
