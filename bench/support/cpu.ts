/**
 * CPU time of processes over a window, from /proc/<pid>/stat: shows which side (server or
 * driver) was busy, so a figure can be checked for having measured the server, not the driver.
 */
import { readFileSync } from 'node:fs';

const TICKS_PER_SECOND = 100;

function cpuSeconds(pid: number): number {
  try {
    // Fields after the command name (which may hold spaces) start at state; utime and stime are the 12th and 13th of those.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND;
  } catch {
    return NaN;
  }
}

/** Starts measuring; the returned function gives each group's CPU use in % of one core. */
export function cpuMeter(groups: Record<string, number[]>): () => Record<string, number> {
  const started = Date.now();
  const before = Object.fromEntries(Object.entries(groups).map(([name, pids]) => [name, pids.map(cpuSeconds)]));
  return () => {
    const seconds = (Date.now() - started) / 1000;
    return Object.fromEntries(
      Object.entries(groups).map(([name, pids]) => {
        const used = pids.reduce((sum, pid, i) => sum + (cpuSeconds(pid) - before[name]![i]!), 0);
        return [name, Math.round((used / seconds) * 100)];
      }),
    );
  };
}

export function formatCpu(usage: Record<string, number>): string {
  return `CPU ${Object.entries(usage).map(([name, pct]) => `${name} ${pct}%`).join(', ')}`;
}
