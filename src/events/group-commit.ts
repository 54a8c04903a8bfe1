/**
 * Group commit: callers submit one item each; items that arrive while a write is in flight are
 * written together by the next one. One write at a time, so batches grow exactly as fast as the
 * store is slow, a lone item waits for nothing, and batches commit (and ring the doorbell, in
 * `afterCommit`) in the order they were taken. (Two writes in flight were tried: the store's
 * lock may take them in either order, which breaks that, and the bench showed no gain.)
 *
 * A write settles each item on its own, so one item the store refuses need not fail its
 * neighbours; a write that throws fails them all.
 */
export interface Submission<R> {
  result: Promise<R>;
  /** Drops the item if its batch has not started yet (the caller gave up waiting). */
  cancel(): void;
}

export interface BatchOutcome<R> {
  outcomes: PromiseSettledResult<R>[];
  /** Runs once the batch's items are settled, before the next batch is taken. */
  afterCommit?: () => void;
}

interface Pending<T, R> {
  item: T;
  cancelled: boolean;
  resolve(value: R): void;
  reject(err: unknown): void;
}

export function createGroupCommit<T, R>(write: (items: T[]) => Promise<BatchOutcome<R>>, maxBatch: number) {
  let queue: Pending<T, R>[] = [];
  let writing = false;

  function takeBatch(): Pending<T, R>[] {
    const batch: Pending<T, R>[] = [];
    let taken = 0;
    for (; taken < queue.length && batch.length < maxBatch; taken++) {
      const pending = queue[taken]!;
      if (!pending.cancelled) batch.push(pending);
    }
    queue = taken === queue.length ? [] : queue.slice(taken);
    return batch;
  }

  async function drain(): Promise<void> {
    writing = true;
    for (let batch = takeBatch(); batch.length > 0; batch = takeBatch()) {
      try {
        const { outcomes, afterCommit } = await write(batch.map((p) => p.item));
        batch.forEach((p, i) => {
          const outcome = outcomes[i];
          if (outcome?.status === 'fulfilled') p.resolve(outcome.value);
          else p.reject(outcome ? outcome.reason : new Error('the batch write returned no outcome for this item'));
        });
        afterCommit?.();
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
