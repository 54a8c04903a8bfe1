/** Polls `condition` until it holds; fails with what was awaited after `timeoutMs`. */
export async function waitFor(condition: () => boolean, timeoutMs = 5000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Gives the system `ms` to do something it must not do (a second trigger, a reconnect). */
export const settle = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
