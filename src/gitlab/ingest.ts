/**
 * GitLab webhook ingest: authenticate → parse → classify → normalize → append to the event log.
 * Returns the answer GitLab gets; the route only writes it. GitLab disables hooks that keep
 * failing, so only real misconfiguration (bad secret, malformed body) gets a 4xx.
 */
import { answerBudget, appendWithin, deadlineFrom } from '../events/append-within.js';
import type { EventLog } from '../events/event-log.js';
import type { NewEvent } from '../events/event.js';
import { header, isJsonMediaType, parseJsonObject, type RequestHeaders } from '../http/json-body.js';
import { countedAnswers, type WebhookAnswer } from '../http/webhook-answer.js';
import type { Metrics } from '../metrics.js';
import { classifyHook, type HookKind } from './classify.js';
import { parsePipeline } from './pipeline-payload.js';
import { parsePush, parseRepositoryUpdate, type Arrived, type ParsedEvents } from './push-payload.js';
import type { WebhookVerifier } from './verify.js';

const MAX_KEY_LENGTH = 255;

/**
 * The delivery's idempotency key: `Idempotency-Key` (GitLab sends one per event and keeps it
 * across retries and manual resends), else the Standard Webhooks `webhook-id` (GitLab sets it to
 * the same value), else none: no dedup. Never X-Gitlab-Event-UUID: GitLab's recursion-detection
 * id is shared by every hook of one webhook-triggered chain (a bot pushing in answer to a
 * webhook), so keying on it would drop distinct pushes.
 */
function deliveryKey(headers: RequestHeaders): { ok: true; key: string | null } | { ok: false; message: string } {
  for (const [name, label] of [
    ['idempotency-key', 'Idempotency-Key'],
    ['webhook-id', 'webhook-id'],
  ] as const) {
    const value = header(headers, name);
    if (value === undefined) continue;
    if (value.length === 0 || value.length > MAX_KEY_LENGTH) return { ok: false, message: `${label}: must be 1 to ${MAX_KEY_LENGTH} characters` };
    return { ok: true, key: value };
  }
  return { ok: true, key: null };
}

function parseHook(kind: HookKind, body: Record<string, unknown>, arrived: Arrived): ParsedEvents<NewEvent> {
  switch (kind) {
    case 'push':
    case 'tag_push':
      return parsePush(kind, body, arrived);
    case 'repository_update':
      return parseRepositoryUpdate(body, arrived);
    case 'pipeline':
      return parsePipeline(body, arrived);
  }
}

export function createWebhookIngest(deps: {
  verifier: WebhookVerifier;
  events: Pick<EventLog, 'appendDelivery'>;
  metrics: Metrics;
  /** Answer 503 once this long has passed since the webhook arrived (GitLab's whole budget is 10 s). */
  deadlineMs: number;
}) {
  const answers = countedAnswers(deps.metrics);
  const budgetMs = answerBudget(deps.deadlineMs);

  return async function ingest(headers: RequestHeaders, rawBody: Buffer, startedAt = process.hrtime.bigint()): Promise<WebhookAnswer> {
    const verdict = deps.verifier.verify(headers, rawBody);
    if (!verdict.ok) return answers.fail('unknown', 401, verdict.code, verdict.message);

    if (!isJsonMediaType(header(headers, 'content-type'))) {
      return answers.fail('unknown', 415, 'unsupported_media_type', 'Content-Type: must be application/json');
    }
    const parsedBody = parseJsonObject(rawBody);
    if (!parsedBody.ok) return answers.fail('unknown', 400, parsedBody.code, parsedBody.message);

    const hook = classifyHook(header(headers, 'x-gitlab-event'), parsedBody.body);
    if ('ignored' in hook) return answers.ignored('other', hook.ignored);

    const key = deliveryKey(headers);
    if (!key.ok) return answers.fail(hook.kind, 400, 'invalid_idempotency_key', key.message);
    const parsed = parseHook(hook.kind, parsedBody.body, { receivedAt: new Date(), deliveryKey: key.key });
    if (parsed.ok === false) return answers.fail(hook.kind, 400, 'invalid_payload', parsed.message);
    if (parsed.ok === 'ignored') return answers.ignored(hook.kind, parsed.reason);

    try {
      const results = await appendWithin(deps.events, parsed.events, deadlineFrom(startedAt, budgetMs));
      return answers.stored(hook.kind, results, startedAt);
    } catch (err) {
      return answers.storeFailed(hook.kind, err);
    }
  };
}

export type WebhookIngest = ReturnType<typeof createWebhookIngest>;
