/**
 * The pause of a polling worker (commit statuses, deploy tokens) that new work can cut short:
 * `wake()` ends the current nap at once, and does nothing when the worker is busy.
 */
export interface Nap {
  /** Sleeps `ms` (the timer does not keep the process alive), or until `wake()`. */
  sleep(ms: number): Promise<void>;
  wake(): void;
}

export function createNap(): Nap {
  let wake: (() => void) | undefined;
  return {
    sleep(ms) {
      return new Promise<void>((resolve) => {
        const timer = setTimeout(done, ms);
        timer.unref();
        function done(): void {
          clearTimeout(timer);
          wake = undefined;
          resolve();
        }
        wake = done;
      });
    },
    wake() {
      wake?.();
    },
  };
}
