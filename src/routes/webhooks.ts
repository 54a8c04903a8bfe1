import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { errorResponses } from '../http/errors.js';

const Accepted = z.object({
  status: z.literal('accepted'),
  eventId: z.string(),
  duplicate: z.boolean(),
});
const Ignored = z.object({ status: z.literal('ignored'), reason: z.string() });

export const webhookRoutes: FastifyPluginAsyncZod = async (app) => {
  // Signatures are computed over the exact bytes GitLab sent: keep the body raw, parse it later.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_request, body, done) => done(null, body));

  app.post(
    '/webhooks/gitlab',
    {
      bodyLimit: app.ctx.config.maxBodyBytes,
      // A body over the limit is refused before the handler runs: count it here, with the others.
      onResponse: async (_request, reply) => {
        if (reply.statusCode === 413) app.ctx.metrics.webhooks.inc({ kind: 'unknown', outcome: 'body_too_large' });
      },
      schema: {
        tags: ['webhooks'],
        summary: 'GitLab project, group or system hook target',
        description:
          'Authenticated by `X-Gitlab-Token` (one of KASGATE_WEBHOOK_SECRETS) or a Standard Webhooks signature ' +
          '(`webhook-id`, `webhook-timestamp`, `webhook-signature`; keys in KASGATE_WEBHOOK_SIGNING_KEYS). ' +
          'Push Hook, Tag Push Hook and System Hook push/tag_push events are stored; other kinds are ignored. ' +
          'Deduplicated by `Idempotency-Key`, else `X-Gitlab-Event-UUID`.',
        response: { 202: Accepted, 200: Ignored, ...errorResponses(400, 401, 413, 415, 500, 503) },
      },
    },
    async (request, reply) => {
      const body = Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0);
      // The deadline and the ingest histogram count from arrival, body upload included.
      const arrivedAt = process.hrtime.bigint() - BigInt(Math.round(reply.elapsedTime * 1e6));
      const answer = await app.ctx.ingest(request.headers, body, arrivedAt);
      if ('error' in answer) {
        if (answer.status >= 500) {
          const err = answer.cause instanceof Error ? answer.cause.message : String(answer.cause);
          request.log[answer.status === 503 ? 'warn' : 'error']({ err, code: answer.error.code }, 'webhook not stored');
        }
        if (answer.status === 503) void reply.header('retry-after', '5');
        return reply.code(answer.status).send({ error: answer.error });
      }
      return reply.code(answer.status).send(answer.body);
    },
  );
};
