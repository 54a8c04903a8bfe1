/** Capped exponential backoff with jitter, and an abortable sleep. */

export interface BackoffPolicy {
  minMs: number;
  maxMs: number;
}

/**
 * Delay before retry number `attempt` (0-based): min·2^attempt capped at max, then "equal
 * jitter" (half fixed, half random) so that many agents restarting together spread out, yet
 * none retries in a tight loop.
 */
export function backoffDelay(attempt: number, policy: BackoffPolicy, random: () => number = Math.random): number {
  const ceiling = Math.min(policy.maxMs, policy.minMs * 2 ** Math.min(attempt, 30));
  return Math.round(ceiling / 2 + random() * (ceiling / 2));
}

/** Resolves after `ms`, or early (without throwing) when `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}
