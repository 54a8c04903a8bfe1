/**
 * Group commit: callers submit one item each; items that arrive while the writes in flight run
 * are written together by the next one. At most `maxInFlight` writes at a time, so batches grow
 * exactly as fast as the store is slow, and a lone item waits for nothing. With more than one
 * in flight, batches may commit (and ring the doorbell, in `afterCommit`) out of the order they
 * were taken: the event log's readers and the dispatcher are made for that (appends overlap, see
 * migrations/1764400000000_overlapping_appends.sql). With the old append lock held through
 * COMMIT two in flight bought nothing; now the second batch's WAL flush overlaps the first's.
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
  /** Runs once the batch's items are settled (the next batch may be on its way to the store already). */
  afterCommit?: () => void;
}

interface Pending<T, R> {
  item: T;
  cancelled: boolean;
  resolve(value: R): void;
  reject(err: unknown): void;
}

export function createGroupCommit<T, R>(write: (items: T[]) => Promise<BatchOutcome<R>>, maxBatch: number, maxInFlight = 1) {
  let queue: Pending<T, R>[] = [];
  let inFlight = 0;

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

  async function writeOne(batch: Pending<T, R>[]): Promise<void> {
    let written: BatchOutcome<R> | undefined;
    let failure: unknown;
    try {
      written = await write(batch.map((p) => p.item));
    } catch (err) {
      failure = err;
    }
    // The next batch goes out before this one is answered and fanned out, so that the store works
    // on it meanwhile: answering 15 webhooks costs this process as long as Postgres takes to
    // commit them. pg-pool sends a query on the next tick, hence the wait for one.
    inFlight--;
    pump();
    await new Promise<void>((resolve) => process.nextTick(resolve));
    if (!written) {
      for (const p of batch) p.reject(failure);
      return;
    }
    const { outcomes, afterCommit } = written;
    batch.forEach((p, i) => {
      const outcome = outcomes[i];
      if (outcome?.status === 'fulfilled') p.resolve(outcome.value);
      else p.reject(outcome ? outcome.reason : new Error('the batch write returned no outcome for this item'));
    });
    afterCommit?.();
  }

  function pump(): void {
    while (inFlight < maxInFlight) {
      const batch = takeBatch();
      if (batch.length === 0) return;
      inFlight++;
      void writeOne(batch);
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
