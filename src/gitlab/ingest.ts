/**
 * Webhook ingest: authenticate → parse → classify → normalize → append to the event log.
 * Returns the answer GitLab gets; the route only writes it. GitLab disables hooks that keep
 * failing, so only real misconfiguration (bad secret, malformed body) gets a 4xx.
 */
import type { EventLog } from '../events/event-log.js';
import type { Metrics } from '../metrics.js';
import { classifyHook, parsePush } from './push-payload.js';
import type { WebhookVerifier } from './verify.js';

export type IngestAnswer =
  | { status: 202; body: { status: 'accepted'; eventId: string; duplicate: boolean } }
  | { status: 200; body: { status: 'ignored'; reason: string } }
  | { status: 400 | 401 | 503; error: { code: string; message: string } };

type Headers = Record<string, string | string[] | undefined>;

const MAX_KEY_LENGTH = 255;

function header(headers: Headers, name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value[0] : value;
}

export class StoreUnavailableError extends Error {}

export function createWebhookIngest(deps: {
  verifier: WebhookVerifier;
  events: Pick<EventLog, 'append'>;
  metrics: Metrics;
  /** Give up on the store after this long and answer 503 (GitLab's whole budget is 10 s). */
  deadlineMs: number;
}) {
  function fail(status: 400 | 401 | 503, code: string, message: string, kind = 'unknown'): IngestAnswer {
    deps.metrics.webhooks.inc({ kind, outcome: code });
    return { status, error: { code, message } };
  }

  async function store(event: Parameters<EventLog['append']>[0]) {
    const submission = deps.events.append(event);
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        submission.cancel();
        reject(new StoreUnavailableError(`the event log did not answer within ${deps.deadlineMs} ms`));
      }, deps.deadlineMs);
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

    let body: unknown;
    try {
      body = JSON.parse(rawBody.toString('utf8'));
    } catch {
      return fail(400, 'invalid_json', 'body: not valid JSON');
    }
    if (typeof body !== 'object' || body === null || Array.isArray(body)) {
      return fail(400, 'invalid_body', 'body: must be a JSON object');
    }

    const hook = classifyHook(header(headers, 'x-gitlab-event'), body as Record<string, unknown>);
    if ('ignored' in hook) {
      deps.metrics.webhooks.inc({ kind: 'other', outcome: 'ignored' });
      return { status: 200, body: { status: 'ignored', reason: hook.ignored } };
    }

    const key = header(headers, 'idempotency-key') ?? header(headers, 'x-gitlab-event-uuid') ?? null;
    if (key !== null && (key.length === 0 || key.length > MAX_KEY_LENGTH)) {
      return fail(400, 'invalid_idempotency_key', `Idempotency-Key: must be 1 to ${MAX_KEY_LENGTH} characters`, hook.kind);
    }
    const parsed = parsePush(hook.kind, body, new Date(), key);
    if (!parsed.ok) return fail(400, 'invalid_payload', parsed.message, hook.kind);

    let result;
    try {
      result = await store(parsed.event);
    } catch (err) {
      const message = err instanceof StoreUnavailableError ? err.message : 'the event log is unavailable; retry later';
      return fail(503, 'store_unavailable', message, hook.kind);
    }
    deps.metrics.webhooks.inc({ kind: hook.kind, outcome: result.duplicate ? 'duplicate' : 'accepted' });
    deps.metrics.ingestDuration.observe(Number(process.hrtime.bigint() - startedAt) / 1e9);
    return { status: 202, body: { status: 'accepted', eventId: result.eventId, duplicate: result.duplicate } };
  };
}

export type WebhookIngest = ReturnType<typeof createWebhookIngest>;
