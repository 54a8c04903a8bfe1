/**
 * Storing a webhook's events within its answer budget. The contract promises a 503 within 2 s when
 * Postgres is unreachable: every step that waits on the store races one deadline, counted from
 * the webhook's arrival, and a delivery not yet written when it passes is dropped from its batch.
 */
import type { AppendResult, EventLog } from './event-log.js';
import type { NewEvent } from './event.js';

/** What is left of the 2 s once the HTTP round trip is allowed for. */
export const ANSWER_BUDGET_MS = 1600;

export class StoreUnavailableError extends Error {}

export interface Deadline {
  readonly budgetMs: number;
  /** Resolves with `work`, or rejects with StoreUnavailableError (after `onTimeout`) once the deadline passes. */
  race<T>(work: Promise<T>, onTimeout?: () => void): Promise<T>;
}

/** A deadline `budgetMs` after `startedAt` (process.hrtime.bigint() at arrival). */
export function deadlineFrom(startedAt: bigint, budgetMs: number): Deadline {
  const endsAt = Number(startedAt) / 1e6 + budgetMs;
  return {
    budgetMs,
    async race<T>(work: Promise<T>, onTimeout?: () => void): Promise<T> {
      const remainingMs = Math.max(0, endsAt - Number(process.hrtime.bigint()) / 1e6);
      let timer: NodeJS.Timeout | undefined;
      const expired = new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          onTimeout?.();
          reject(new StoreUnavailableError(`the event log did not answer within ${budgetMs} ms; retry later`));
        }, remainingMs);
      });
      try {
        return await Promise.race([work, expired]);
      } finally {
        clearTimeout(timer);
      }
    },
  };
}

/** The budget for a store whose own deadline is `storeDeadlineMs`: whichever is shorter. */
export const answerBudget = (storeDeadlineMs: number): number => Math.min(storeDeadlineMs, ANSWER_BUDGET_MS);

export function appendWithin(
  events: Pick<EventLog, 'appendDelivery'>,
  delivery: NewEvent[],
  deadline: Deadline,
): Promise<AppendResult[]> {
  const submission = events.appendDelivery(delivery);
  return deadline.race(submission.result, () => submission.cancel());
}
