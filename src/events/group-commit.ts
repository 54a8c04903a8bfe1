/**
 * Group commit: callers submit one item each; items that arrive while a write is in flight are
 * written together by the next one. One write at a time, so batches grow exactly as fast as the
 * store is slow, and a lone item waits for nothing. The write settles each item on its own, so
 * one item that the store refuses need not fail its neighbours; a write that throws fails them all.
 */
export interface Submission<R> {
  result: Promise<R>;
  /** Drops the item if its batch has not started yet (the caller gave up waiting). */
  cancel(): void;
}

interface Pending<T, R> {
  item: T;
  cancelled: boolean;
  resolve(value: R): void;
  reject(err: unknown): void;
}

export function createGroupCommit<T, R>(write: (items: T[]) => Promise<PromiseSettledResult<R>[]>, maxBatch: number) {
  let queue: Pending<T, R>[] = [];
  let writing = false;

  async function drain(): Promise<void> {
    writing = true;
    while (queue.length > 0) {
      const batch = queue.filter((p) => !p.cancelled).slice(0, maxBatch);
      const taken = new Set(batch);
      queue = queue.filter((p) => !p.cancelled && !taken.has(p));
      if (batch.length === 0) continue;
      try {
        const results = await write(batch.map((p) => p.item));
        batch.forEach((p, i) => {
          const outcome = results[i];
          if (outcome?.status === 'fulfilled') p.resolve(outcome.value);
          else p.reject(outcome ? outcome.reason : new Error('the batch write returned no outcome for this item'));
        });
      } catch (err) {
        for (const p of batch) p.reject(err);
      }
    }
    writing = false;
  }

  return {
    submit(item: T): Submission<R> {
      let pending!: Pending<T, R>;
      const result = new Promise<R>((resolve, reject) => {
        pending = { item, cancelled: false, resolve, reject };
      });
      queue.push(pending);
      if (!writing) void drain();
      return { result, cancel: () => (pending.cancelled = true) };
    },
    get queued(): number {
      return queue.length;
    },
  };
}
