/**
 * What a webhook endpoint (GitLab's, the container registry's) answers, built by its ingest and
 * written by the route. Senders disable or back up on endpoints that keep failing, so only real
 * misconfiguration gets a 4xx.
 */
import { isStoreUnavailable } from '../db/pool.js';
import { StoreUnavailableError } from '../events/append-within.js';
import type { AppendResult } from '../events/event-log.js';
import type { Metrics } from '../metrics.js';

export interface AcceptedBody {
  status: 'accepted';
  /** The first of eventIds (the one event of most deliveries). */
  eventId: string;
  /** Every event the delivery stored, in the delivery's order (a repository_update's changes, an envelope's events). */
  eventIds: string[];
  /** True when every one of them was already stored (a redelivery). */
  duplicate: boolean;
}

export type ErrorStatus = 400 | 401 | 415 | 500 | 503;

export type WebhookAnswer =
  | { status: 202; body: AcceptedBody }
  | { status: 200; body: { status: 'ignored'; reason: string } }
  | {
      status: ErrorStatus;
      error: { code: string; message: string };
      /** For the gateway log only: what went wrong behind a 5xx. Never sent to the caller. */
      cause?: unknown;
    };

export function acceptedAnswer(results: AppendResult[]): Extract<WebhookAnswer, { status: 202 }> {
  const eventIds = results.map((r) => r.eventId);
  return {
    status: 202,
    body: { status: 'accepted', eventId: eventIds[0]!, eventIds, duplicate: results.every((r) => r.duplicate) },
  };
}

export const ignoredAnswer = (reason: string): WebhookAnswer => ({ status: 200, body: { status: 'ignored', reason } });

type ErrorAnswer = Extract<WebhookAnswer, { error: unknown }>;

export function errorAnswer(status: ErrorStatus, code: string, message: string, cause?: unknown): ErrorAnswer {
  return { status, error: { code, message }, ...(cause === undefined ? {} : { cause }) };
}

/** A failed store: 503 when the store is away or slow (the sender retries), 500 otherwise. */
export function storeFailedAnswer(err: unknown): ErrorAnswer {
  if (err instanceof StoreUnavailableError) return errorAnswer(503, 'store_unavailable', err.message, err);
  if (isStoreUnavailable(err)) return errorAnswer(503, 'store_unavailable', 'the event log is unavailable; retry later', err);
  return errorAnswer(500, 'internal_error', 'the event could not be stored; see the gateway log', err);
}

/** An endpoint's answers, each counted in kasgate_webhooks_total by the delivery's kind and outcome. */
export function countedAnswers(metrics: Pick<Metrics, 'webhooks' | 'ingestDuration'>) {
  return {
    fail(kind: string, status: ErrorStatus, code: string, message: string): WebhookAnswer {
      metrics.webhooks.inc({ kind, outcome: code });
      return errorAnswer(status, code, message);
    },
    ignored(kind: string, reason: string): WebhookAnswer {
      metrics.webhooks.inc({ kind, outcome: 'ignored' });
      return ignoredAnswer(reason);
    },
    storeFailed(kind: string, err: unknown): WebhookAnswer {
      const answer = storeFailedAnswer(err);
      metrics.webhooks.inc({ kind, outcome: answer.error.code });
      return answer;
    },
    /** The delivery's events are stored: 202, and the time since it arrived (`startedAt`, process.hrtime.bigint()). */
    stored(kind: string, results: AppendResult[], startedAt: bigint): WebhookAnswer {
      const answer = acceptedAnswer(results);
      metrics.webhooks.inc({ kind, outcome: answer.body.duplicate ? 'duplicate' : 'accepted' });
      metrics.ingestDuration.observe(Number(process.hrtime.bigint() - startedAt) / 1e9);
      return answer;
    },
  };
}
