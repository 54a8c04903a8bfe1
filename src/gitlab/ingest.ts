/**
 * Webhook ingest: authenticate → parse → classify → normalize → append to the event log.
 * Returns the answer GitLab gets; the route only writes it. GitLab disables hooks that keep
 * failing, so only real misconfiguration (bad secret, malformed body) gets a 4xx.
 */
import { isStoreUnavailable } from '../db/pool.js';
import type { EventLog } from '../events/event-log.js';
import type { Metrics } from '../metrics.js';
import { classifyHook, parsePush } from './push-payload.js';
import type { WebhookVerifier } from './verify.js';

export type IngestAnswer =
  | { status: 202; body: { status: 'accepted'; eventId: string; duplicate: boolean } }
  | { status: 200; body: { status: 'ignored'; reason: string } }
  | {
      status: 400 | 401 | 415 | 500 | 503;
      error: { code: string; message: string };
      /** For the gateway log only: what went wrong behind a 5xx. Never sent to the caller. */
      cause?: unknown;
    };

type Headers = Record<string, string | string[] | undefined>;

const MAX_KEY_LENGTH = 255;
/**
 * The contract promises GitLab a 503 within 2 s when Postgres is unreachable; whatever the
 * configured store deadline, give up early enough to leave room for the HTTP round trip.
 */
const ANSWER_BUDGET_MS = 1600;
const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

function header(headers: Headers, name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value[0] : value;
}

/** application/json, or any application/…+json, whatever its parameters. */
function isJsonMediaType(contentType: string | undefined): boolean {
  const type = contentType?.split(';')[0]?.trim().toLowerCase();
  return type === 'application/json' || (type !== undefined && /^application\/[a-z0-9.+-]+\+json$/.test(type));
}

export class StoreUnavailableError extends Error {}

export function createWebhookIngest(deps: {
  verifier: WebhookVerifier;
  events: Pick<EventLog, 'append'>;
  metrics: Metrics;
  /** Answer 503 once this long has passed since the webhook arrived (GitLab's whole budget is 10 s). */
  deadlineMs: number;
}) {
  function fail(status: 400 | 401 | 415 | 500 | 503, code: string, message: string, kind = 'unknown', cause?: unknown): IngestAnswer {
    deps.metrics.webhooks.inc({ kind, outcome: code });
    return { status, error: { code, message }, ...(cause === undefined ? {} : { cause }) };
  }

  async function store(event: Parameters<EventLog['append']>[0], startedAt: bigint) {
    const elapsedMs = Number(process.hrtime.bigint() - startedAt) / 1e6;
    const deadlineMs = Math.min(deps.deadlineMs, ANSWER_BUDGET_MS);
    const remainingMs = Math.max(0, deadlineMs - elapsedMs);
    const submission = deps.events.append(event);
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        submission.cancel();
        reject(new StoreUnavailableError(`the event log did not answer within ${deadlineMs} ms; retry later`));
      }, remainingMs);
    });
    try {
      return await Promise.race([submission.result, deadline]);
    } finally {
      clearTimeout(timer);
    }
  }

  return async function ingest(headers: Headers, rawBody: Buffer, startedAt = process.hrtime.bigint()): Promise<IngestAnswer> {
    const verdict = deps.verifier.verify(headers, rawBody);
    if (!verdict.ok) return fail(401, verdict.code, verdict.message);

    if (!isJsonMediaType(header(headers, 'content-type'))) {
      return fail(415, 'unsupported_media_type', 'Content-Type: must be application/json');
    }
    let body: unknown;
    try {
      body = JSON.parse(strictUtf8.decode(rawBody));
    } catch (err) {
      const what = err instanceof SyntaxError ? 'not valid JSON' : err instanceof TypeError ? 'not valid UTF-8' : 'not parseable';
      return fail(400, 'invalid_json', `body: ${what}`);
    }
    if (typeof body !== 'object' || body === null || Array.isArray(body)) {
      return fail(400, 'invalid_body', 'body: must be a JSON object');
    }

    const hook = classifyHook(header(headers, 'x-gitlab-event'), body as Record<string, unknown>);
    if ('ignored' in hook) {
      deps.metrics.webhooks.inc({ kind: 'other', outcome: 'ignored' });
      return { status: 200, body: { status: 'ignored', reason: hook.ignored } };
    }

    const keyHeader = header(headers, 'idempotency-key') !== undefined ? 'Idempotency-Key' : 'X-Gitlab-Event-UUID';
    const key = header(headers, keyHeader.toLowerCase()) ?? null;
    if (key !== null && (key.length === 0 || key.length > MAX_KEY_LENGTH)) {
      return fail(400, 'invalid_idempotency_key', `${keyHeader}: must be 1 to ${MAX_KEY_LENGTH} characters`, hook.kind);
    }
    const parsed = parsePush(hook.kind, body, new Date(), key);
    if (!parsed.ok) return fail(400, 'invalid_payload', parsed.message, hook.kind);

    let result;
    try {
      result = await store(parsed.event, startedAt);
    } catch (err) {
      if (err instanceof StoreUnavailableError) return fail(503, 'store_unavailable', err.message, hook.kind, err);
      if (isStoreUnavailable(err)) {
        return fail(503, 'store_unavailable', 'the event log is unavailable; retry later', hook.kind, err);
      }
      return fail(500, 'internal_error', 'the event could not be stored; see the gateway log', hook.kind, err);
    }
    deps.metrics.webhooks.inc({ kind: hook.kind, outcome: result.duplicate ? 'duplicate' : 'accepted' });
    deps.metrics.ingestDuration.observe(Number(process.hrtime.bigint() - startedAt) / 1e9);
    return { status: 202, body: { status: 'accepted', eventId: result.eventId, duplicate: result.duplicate } };
  };
}

export type WebhookIngest = ReturnType<typeof createWebhookIngest>;
