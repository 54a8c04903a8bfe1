/**
 * Group commit: callers submit one item each; items that arrive while writes are in flight are
 * written together by the next write. A lone item waits for nothing; under load, batches grow as
 * fast as the store is slow.
 *
 * Up to `concurrency` writes are in flight. The event log serializes appends inside Postgres (its
 * ids must commit in order), so a second write simply waits there and starts the instant the
 * first commits, instead of a round trip later. Writes are settled strictly in the order they
 * were started, and each write's `afterCommit` effect (the doorbell) runs in that order too.
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
  /** Runs once the batch is settled, in batch order. */
  afterCommit?: () => void;
}

interface Pending<T, R> {
  item: T;
  cancelled: boolean;
  resolve(value: R): void;
  reject(err: unknown): void;
}

export function createGroupCommit<T, R>(
  write: (items: T[]) => Promise<BatchOutcome<R>>,
  options: { maxBatch: number; concurrency: number },
) {
  let queue: Pending<T, R>[] = [];
  let inFlight = 0;
  let settledInOrder: Promise<void> = Promise.resolve();

  function takeBatch(): Pending<T, R>[] {
    const batch: Pending<T, R>[] = [];
    let taken = 0;
    for (; taken < queue.length && batch.length < options.maxBatch; taken++) {
      const pending = queue[taken]!;
      if (!pending.cancelled) batch.push(pending);
    }
    queue = taken === queue.length ? [] : queue.slice(taken);
    return batch;
  }

  function settle(batch: Pending<T, R>[], result: { ok: true; value: BatchOutcome<R> } | { ok: false; error: unknown }): void {
    if (!result.ok) {
      for (const p of batch) p.reject(result.error);
      return;
    }
    const { outcomes, afterCommit } = result.value;
    batch.forEach((p, i) => {
      const outcome = outcomes[i];
      if (outcome?.status === 'fulfilled') p.resolve(outcome.value);
      else p.reject(outcome ? outcome.reason : new Error('the batch write returned no outcome for this item'));
    });
    afterCommit?.();
  }

  function pump(): void {
    while (inFlight < options.concurrency && queue.length > 0) {
      const batch = takeBatch();
      if (batch.length === 0) return;
      inFlight++;
      const written = write(batch.map((p) => p.item)).then(
        (value) => ({ ok: true as const, value }),
        (error: unknown) => ({ ok: false as const, error }),
      );
      settledInOrder = settledInOrder.then(async () => settle(batch, await written));
      void written.then(() => {
        inFlight--;
        pump();
      });
    }
  }

  return {
    submit(item: T): Submission<R> {
      let pending!: Pending<T, R>;
      const result = new Promise<R>((resolve, reject) => {
        pending = { item, cancelled: false, resolve, reject };
      });
      queue.push(pending);
      pump();
      return { result, cancel: () => (pending.cancelled = true) };
    },
    get queued(): number {
      return queue.length;
    },
  };
}
