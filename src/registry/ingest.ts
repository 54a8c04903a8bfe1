/**
 * Container registry notifications → artifact events (source `registry`): authenticate →
 * parse the envelope → resolve each tagged push's project → append to the event log. Answers as
 * the GitLab webhook does (202 stored, 200 ignored, 401, 400, 415, 503 within 2 s); the route
 * writes the answer.
 */
import { answerBudget, appendWithin, deadlineFrom } from '../events/append-within.js';
import type { EventLog } from '../events/event-log.js';
import type { RegistryArtifactEvent } from '../events/event.js';
import { header, isJsonMediaType, parseJsonObject, type RequestHeaders } from '../http/json-body.js';
import { secretSet } from '../http/secret-match.js';
import { countedAnswers, type ErrorStatus, type WebhookAnswer } from '../http/webhook-answer.js';
import type { Metrics } from '../metrics.js';
import type { ProjectStore } from '../projects/project-store.js';
import { parseEnvelope, type TaggedPushEvent } from './envelope.js';
import { resolveProjects } from './project-resolution.js';

const plural = (n: number, one: string, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

export function createRegistryIngest(deps: {
  /** Accepted `Authorization` values, scheme included (KASGATE_REGISTRY_SECRETS). */
  secrets: string[];
  events: Pick<EventLog, 'appendDelivery'>;
  projects: Pick<ProjectStore, 'findByPaths'>;
  metrics: Metrics;
  deadlineMs: number;
}) {
  const secrets = secretSet(deps.secrets);
  const answers = countedAnswers(deps.metrics);
  const budgetMs = answerBudget(deps.deadlineMs);
  const fail = (status: ErrorStatus, code: string, message: string) => answers.fail('registry', status, code, message);
  const ignored = (reason: string) => answers.ignored('registry', reason);

  function authenticate(headers: RequestHeaders): WebhookAnswer | undefined {
    const presented = header(headers, 'authorization');
    if (secrets.size === 0) return fail(401, 'not_configured', 'no registry secret is configured (KASGATE_REGISTRY_SECRETS)');
    if (presented === undefined) {
      return fail(401, 'missing_credentials', 'send Authorization: one of KASGATE_REGISTRY_SECRETS (a header of the registry notification endpoint)');
    }
    if (!secrets.has(presented)) return fail(401, 'invalid_token', 'Authorization does not match a configured registry secret');
    return undefined;
  }

  return async function ingest(headers: RequestHeaders, rawBody: Buffer, startedAt = process.hrtime.bigint()): Promise<WebhookAnswer> {
    const refused = authenticate(headers);
    if (refused) return refused;
    if (!isJsonMediaType(header(headers, 'content-type'))) {
      return fail(415, 'unsupported_media_type', 'Content-Type: must be application/vnd.docker.distribution.events.v2+json (or v1+json, or application/json)');
    }
    const body = parseJsonObject(rawBody);
    if (!body.ok) return fail(400, body.code, body.message);
    const envelope = parseEnvelope(body.body);
    if (!envelope.ok) return fail(400, 'invalid_payload', envelope.message);

    const { pushes, skipped } = envelope;
    deps.metrics.registryEvents.inc({ outcome: 'not_push' }, skipped.not_push);
    deps.metrics.registryEvents.inc({ outcome: 'untagged' }, skipped.untagged);
    const notCounted = [
      skipped.not_push > 0 ? `${plural(skipped.not_push, 'event')} not a push` : '',
      skipped.untagged > 0 ? `${plural(skipped.untagged, 'push', 'pushes')} without a tag` : '',
    ].filter(Boolean);
    if (pushes.length === 0) return ignored(`nothing in the envelope changes a tag: ${notCounted.join(', ')}`);

    const deadline = deadlineFrom(startedAt, budgetMs);
    const receivedAt = new Date();
    let events: RegistryArtifactEvent[];
    let unknown: TaggedPushEvent[];
    try {
      const resolved = await deadline.race(resolveProjects(deps.projects, pushes.map((p) => p.repository)));
      events = [];
      unknown = [];
      for (const push of pushes) {
        const project = resolved.get(push.repository);
        if (!project) {
          unknown.push(push);
          continue;
        }
        events.push({
          kind: 'artifact',
          source: 'registry',
          projectId: project.id,
          projectPath: project.path,
          // The last visibility seen; unknown (null) fails closed.
          visibility: project.visibility,
          defaultBranch: project.defaultBranch,
          repository: push.repository,
          tag: push.tag,
          digest: push.digest,
          userUsername: push.actor,
          receivedAt,
          idempotencyKey: { scope: 'registry', value: push.id },
        });
      }
      deps.metrics.registryEvents.inc({ outcome: 'unknown_project' }, unknown.length);
      if (events.length === 0) {
        const repositories = [...new Set(unknown.map((p) => JSON.stringify(p.repository)))].join(', ');
        return ignored(`no known project for repository ${repositories}${notCounted.length > 0 ? `; ${notCounted.join(', ')}` : ''}`);
      }
      const results = await appendWithin(deps.events, events, deadline);
      for (const result of results) deps.metrics.registryEvents.inc({ outcome: result.duplicate ? 'duplicate' : 'accepted' });
      return answers.stored('registry', results, startedAt);
    } catch (err) {
      return answers.storeFailed('registry', err);
    }
  };
}

export type RegistryIngest = ReturnType<typeof createRegistryIngest>;
