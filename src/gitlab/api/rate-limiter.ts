/**
 * A token bucket for requests to GitLab: `perSecond` on average, `burst` at once, and a pause
 * that every caller honours after GitLab answered 429 (its limits are per token, so one 429
 * speaks for all of this replica's requests).
 */
export class TokenBucket {
  private tokens: number;
  private refilledAt = Date.now();
  private pausedUntil = 0;

  constructor(
    private readonly perSecond: number,
    private readonly burst: number,
    private readonly now: () => number = Date.now,
  ) {
    this.tokens = burst;
    this.refilledAt = now();
  }

  /**
   * Reserves one request and returns how long to wait before sending it. Reservations beyond the
   * bucket run into debt, so waiters are served in order and never more than the rate.
   */
  reserve(): number {
    const now = this.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.refilledAt) / 1000) * this.perSecond);
    this.refilledAt = now;
    this.tokens -= 1;
    const forRate = this.tokens >= 0 ? 0 : (-this.tokens / this.perSecond) * 1000;
    return Math.max(forRate, this.pausedUntil - now, 0);
  }

  /** Nobody sends before `ms` from now (GitLab's Retry-After). */
  pauseFor(ms: number): void {
    this.pausedUntil = Math.max(this.pausedUntil, this.now() + ms);
  }

  /** Waits for a reservation; rejects when `signal` aborts (the reservation is then lost, which only slows others a little). */
  async take(signal?: AbortSignal): Promise<void> {
    const wait = this.reserve();
    if (wait > 0) await sleep(wait, signal);
  }
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
