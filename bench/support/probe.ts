/**
 * Preloaded (`node --import`) into every benchmarked server, kasgate and floor alike, so both
 * are measured the same way from inside: memory and event-loop delay, answered over the IPC
 * channel the runner spawns them with. It touches nothing of the server itself.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';

export interface ProbeStats {
  rss: number;
  heapUsed: number;
  heapTotal: number;
  external: number;
  /** Event-loop delay since the last reset, in ms, beyond the sampling interval. */
  loopDelay: { p50: number; p99: number; max: number; mean: number };
}

export type ProbeRequest = { probe: 'stats'; id: number; gc: boolean; reset: boolean };

const RESOLUTION_MS = 5;

if (process.send) {
  const delay = monitorEventLoopDelay({ resolution: RESOLUTION_MS });
  delay.enable();
  const ms = (ns: number) => Math.max(0, ns / 1e6 - RESOLUTION_MS);

  process.on('message', (message: ProbeRequest) => {
    if (message?.probe !== 'stats') return;
    if (message.gc) {
      // Twice: the first pass can leave weak or finalizable objects for the second.
      globalThis.gc?.();
      globalThis.gc?.();
    }
    const memory = process.memoryUsage();
    const stats: ProbeStats = {
      rss: memory.rss,
      heapUsed: memory.heapUsed,
      heapTotal: memory.heapTotal,
      external: memory.external,
      loopDelay: {
        p50: ms(delay.percentile(50)),
        p99: ms(delay.percentile(99)),
        max: ms(delay.max),
        mean: ms(delay.mean),
      },
    };
    if (message.reset) delay.reset();
    process.send!({ probe: 'stats', id: message.id, stats });
  });
  // The probe must never be what keeps a server alive, nor let it outlive a runner that died.
  process.channel?.unref();
  process.on('disconnect', () => process.kill(process.pid, 'SIGTERM'));
}
