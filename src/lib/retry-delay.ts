/** Backoff for the background writers' retries on Postgres (deliveries, cluster state, replay reads). */
const RETRY_DELAYS_MS = [250, 500, 1000, 2000, 5000];

/** The wait before retry number `attempt` (0-based); the last one repeats. */
export const retryDelayMs = (attempt: number): number => RETRY_DELAYS_MS[Math.min(attempt, RETRY_DELAYS_MS.length - 1)]!;

/** How many retries a bounded one gets (each delay once). */
export const BOUNDED_RETRIES = RETRY_DELAYS_MS.length;
