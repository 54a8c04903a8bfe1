/** POST /webhooks/gitlab (GitLab hooks) and POST /webhooks/registry (container registry notifications). */
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import type { FastifyReply, FastifyRequest, FastifySchemaCompiler } from 'fastify';
import { z } from 'zod';
import { PipelineBody } from '../gitlab/pipeline-payload.js';
import { PushBody, RepositoryUpdateBody } from '../gitlab/push-payload.js';
import { errorResponses } from '../http/errors.js';
import type { WebhookAnswer } from '../http/webhook-answer.js';
import { TaggedPush } from '../registry/envelope.js';

const Accepted = z
  .object({
    status: z.literal('accepted'),
    eventId: z.string().meta({ description: 'The first of eventIds (most deliveries store one event)' }),
    eventIds: z.array(z.string()).meta({
      description:
        "Every event the delivery stored, in the delivery's order: one per change of a repository_update, one per tagged push of a registry envelope",
    }),
    duplicate: z.boolean().meta({ description: 'True when every one of them was already stored (a redelivery): nothing is sent again' }),
  })
  .meta({ id: 'Accepted' });
const Ignored = z.object({ status: z.literal('ignored'), reason: z.string() }).meta({ id: 'Ignored' });

/**
 * These routes read their raw bytes and headers themselves (signatures are over the exact body; the
 * ingest answers bad input in the contract's words). Their header and body schemas are for the
 * OpenAPI document only: this compiler accepts everything and changes nothing, so documenting
 * them cannot change an answer.
 */
const documentedOnly: FastifySchemaCompiler<unknown> = () => () => true;

/** The schema as a document of what is read: every object admits more fields (the senders' payloads carry many). */
function admittingMore(schema: z.ZodType): z.ZodType {
  if (schema instanceof z.ZodObject) {
    const shape = Object.fromEntries(Object.entries(schema.shape as Record<string, z.ZodType>).map(([k, v]) => [k, admittingMore(v)]));
    const loose = z.looseObject(shape);
    const meta = schema.meta();
    return meta ? loose.meta(meta) : loose;
  }
  if (schema instanceof z.ZodOptional) return admittingMore(schema.unwrap() as z.ZodType).optional();
  if (schema instanceof z.ZodNullable) return admittingMore(schema.unwrap() as z.ZodType).nullable();
  if (schema instanceof z.ZodArray) return z.array(admittingMore(schema.element as z.ZodType));
  return schema;
}

const optionalHeader = (description: string) => z.string().optional().describe(description);

/** X-Gitlab-Token is the gitlabToken security scheme below (@fastify/swagger lists a scheme's header there, not here). */
const GitLabHeaders = z.object({
  'X-Gitlab-Event': optionalHeader(
    'The kind of hook: `Push Hook`, `Tag Push Hook`, `Pipeline Hook` or `System Hook` (then `event_name` in the body says which). ' +
      'Other kinds are answered 200 ignored. Without it, the body\'s `event_name` or `object_kind` decides.',
  ),
  'Idempotency-Key': optionalHeader(
    'The delivery key (1 to 255 characters) GitLab keeps across retries and resends: a second delivery with the same key stores nothing and answers `duplicate: true`.',
  ),
  'webhook-id': optionalHeader('Standard Webhooks message id: part of the signed content, and the delivery key when Idempotency-Key is absent.'),
  'webhook-timestamp': optionalHeader('Standard Webhooks: seconds since the epoch; refused when more than 5 minutes from now.'),
  'webhook-signature': optionalHeader(
    'Standard Webhooks: space-separated `v1,<base64 HMAC-SHA256 of "id.timestamp.body">` with one of KASGATE_WEBHOOK_SIGNING_KEYS (`whsec_…`).',
  ),
  'X-Gitlab-Event-UUID': optionalHeader('Logged only. Never a delivery key: GitLab shares it between every hook of one webhook-triggered chain.'),
});

const readFields = 'The fields kasgate reads; the sender sends many more, which are ignored.';
const GitLabHookBody = z
  .union([
    admittingMore(
      PushBody.extend({
        object_kind: z.enum(['push', 'tag_push']).optional().describe('Project and group hooks'),
        event_name: z.enum(['push', 'tag_push']).optional().describe('System hooks'),
      }),
    ).meta({ id: 'GitLabPushHook', description: `Push Hook, Tag Push Hook, or System Hook push / tag_push. ${readFields}` }),
    admittingMore(RepositoryUpdateBody.extend({ event_name: z.literal('repository_update') })).meta({
      id: 'GitLabRepositoryUpdate',
      description: `System Hook repository_update: one event per changed branch or tag. ${readFields}`,
    }),
    admittingMore(
      PipelineBody.extend({
        object_kind: z.literal('pipeline').optional(),
        object_attributes: PipelineBody.shape.object_attributes.extend({
          status: z.string().describe('Only `success` stores an artifact event; other states are answered 200 ignored'),
        }),
      }),
    ).meta({
      id: 'GitLabPipelineHook',
      description: `Pipeline Hook. ${readFields}`,
    }),
  ])
  .describe('A GitLab webhook payload (GitLab\'s "Webhook events" and "System hooks" documentation has them whole)');

const RegistryEnvelope = admittingMore(
  z.object({
    events: z
      .array(TaggedPush.extend({ action: z.string().describe('Only `push` with a `target.tag` counts; pulls, mounts and deletes are ignored') }))
      .min(1),
  }),
).meta({ id: 'RegistryEnvelope', description: `Docker distribution notification envelope, one or more events. ${readFields}` });

/** Where the handlers read them: src/gitlab/verify.ts, src/gitlab/ingest.ts, src/registry/ingest.ts. */
export const webhookSecuritySchemes = {
  gitlabToken: {
    type: 'apiKey',
    in: 'header',
    name: 'X-Gitlab-Token',
    description:
      "A GitLab hook's secret token: one of KASGATE_WEBHOOK_SECRETS. Not needed when the delivery carries a valid Standard Webhooks signature (webhook-signature)",
  },
  registrySecret: {
    type: 'apiKey',
    in: 'header',
    name: 'Authorization',
    description: "Exactly one of KASGATE_REGISTRY_SECRETS, scheme included (e.g. `Bearer …`), as set in the registry's notification endpoint headers",
  },
} as const;

type Ingest = (headers: FastifyRequest['headers'], body: Buffer, arrivedAt: bigint) => Promise<WebhookAnswer>;

export const webhookRoutes: FastifyPluginAsyncZod = async (app) => {
  const { ctx } = app;
  // Signatures are computed over the exact bytes the sender sent: keep the body raw, parse it later.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_request, body, done) => done(null, body));

  /** Runs an ingest and writes its answer. */
  const answerWith = (ingest: Ingest, what: string) => async (request: FastifyRequest, reply: FastifyReply) => {
    const body = Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0);
    // The deadline and the ingest histogram count from arrival, body upload included.
    const arrivedAt = process.hrtime.bigint() - BigInt(Math.round(reply.elapsedTime * 1e6));
    const answer = await ingest(request.headers, body, arrivedAt);
    if ('error' in answer) {
      if (answer.status >= 500) {
        const err = answer.cause instanceof Error ? answer.cause.message : String(answer.cause);
        request.log[answer.status === 503 ? 'warn' : 'error']({ err, code: answer.error.code }, `${what} not stored`);
      }
      if (answer.status === 503) void reply.header('retry-after', '5');
      return reply.code(answer.status).send({ error: answer.error });
    }
    return reply.code(answer.status).send(answer.body);
  };

  /** A body over the limit is refused before the handler runs: count it here, with the others. */
  const countTooLarge = (kind: string) => async (_request: FastifyRequest, reply: FastifyReply) => {
    if (reply.statusCode === 413) ctx.metrics.webhooks.inc({ kind, outcome: 'body_too_large' });
  };

  app.post(
    '/webhooks/gitlab',
    {
      bodyLimit: ctx.config.maxBodyBytes,
      onResponse: countTooLarge('unknown'),
      validatorCompiler: documentedOnly,
      schema: {
        headers: GitLabHeaders,
        security: [{ gitlabToken: [] }, {}],
        body: GitLabHookBody,
        tags: ['webhooks'],
        summary: 'GitLab project, group or system hook target',
        description:
          'Authenticated by `X-Gitlab-Token` (one of KASGATE_WEBHOOK_SECRETS) or a Standard Webhooks signature ' +
          '(`webhook-id`, `webhook-timestamp`, `webhook-signature`; keys in KASGATE_WEBHOOK_SIGNING_KEYS). ' +
          'Stored: Push Hook and Tag Push Hook; System Hook push, tag_push and repository_update (one event per changed ' +
          'branch or tag); Pipeline Hook whose status is success (an artifact event). Other kinds, and pipelines in any ' +
          'other state, are answered 200 ignored. ' +
          'Deduplicated by `Idempotency-Key`, else the Standard Webhooks `webhook-id`, else not at all; never by ' +
          '`X-Gitlab-Event-UUID`, which GitLab shares between every hook of one webhook-triggered chain.',
        response: {
          202: Accepted.describe('Stored (or, with `duplicate`, stored before): the agents that may see the project are notified'),
          200: Ignored.describe('Authenticated, but nothing in it is stored; `reason` says why'),
          ...errorResponses(
            [400, 'The body is not JSON, lacks a field kasgate stores, or a key header is malformed: the message names it'],
            [401, 'No X-Gitlab-Token of KASGATE_WEBHOOK_SECRETS and no valid webhook-signature'],
            413,
            415,
            500,
            [503, 'Not stored in time (the database is slow or away): GitLab retries; retry after Retry-After'],
          ),
        },
      },
    },
    answerWith((headers, body, arrivedAt) => ctx.ingest(headers, body, arrivedAt), 'webhook'),
  );

  app.post(
    '/webhooks/registry',
    {
      bodyLimit: ctx.config.maxBodyBytes,
      onResponse: countTooLarge('registry'),
      validatorCompiler: documentedOnly,
      schema: {
        security: [{ registrySecret: [] }],
        body: RegistryEnvelope,
        consumes: ['application/json', 'application/vnd.docker.distribution.events.v1+json', 'application/vnd.docker.distribution.events.v2+json'],
        tags: ['webhooks'],
        summary: 'Container registry notifications (Docker distribution envelope)',
        description:
          'Authenticated by an `Authorization` header equal to one of KASGATE_REGISTRY_SECRETS, scheme included ' +
          "(as set in the registry's notification endpoint headers). Content-Type " +
          '`application/vnd.docker.distribution.events.v1+json`, `…v2+json` or `application/json`. ' +
          'Each `push` event with a `tag` becomes an artifact event of the project whose path is the longest known ' +
          "prefix of `target.repository`, with that project's last seen visibility; the event `id` is its idempotency key. " +
          'Pulls, pushes without a tag (layers, manifests by digest) and repositories of no known project are ignored: ' +
          '200 when nothing in the envelope counts.',
        response: {
          202: Accepted.describe('Stored: one artifact event per tagged push (with `duplicate`, stored before)'),
          200: Ignored.describe('Authenticated, but no event in the envelope counts; `reason` says why'),
          ...errorResponses(
            [400, 'The body is not JSON, or a tagged push lacks a field kasgate stores: the message names it'],
            [401, 'The Authorization header is none of KASGATE_REGISTRY_SECRETS'],
            413,
            415,
            500,
            [503, 'Not stored in time (the database is slow or away): the registry retries; retry after Retry-After'],
          ),
        },
      },
    },
    answerWith((headers, body, arrivedAt) => ctx.registryIngest(headers, body, arrivedAt), 'registry notification'),
  );
};
