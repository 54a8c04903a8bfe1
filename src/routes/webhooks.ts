/** POST /webhooks/gitlab (GitLab hooks) and POST /webhooks/registry (container registry notifications). */
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { errorResponses } from '../http/errors.js';
import type { WebhookAnswer } from '../http/webhook-answer.js';

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
      schema: {
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
        response: { 202: Accepted, 200: Ignored, ...errorResponses(400, 401, 413, 415, 500, 503) },
      },
    },
    answerWith((headers, body, arrivedAt) => ctx.ingest(headers, body, arrivedAt), 'webhook'),
  );

  app.post(
    '/webhooks/registry',
    {
      bodyLimit: ctx.config.maxBodyBytes,
      onResponse: countTooLarge('registry'),
      schema: {
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
        response: { 202: Accepted, 200: Ignored, ...errorResponses(400, 401, 413, 415, 500, 503) },
      },
    },
    answerWith((headers, body, arrivedAt) => ctx.registryIngest(headers, body, arrivedAt), 'registry notification'),
  );
};
