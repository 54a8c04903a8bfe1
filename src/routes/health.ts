import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';

const Readiness = z.object({
  status: z.enum(['ready', 'not_ready']),
  checks: z.record(z.string(), z.string()),
});

export const healthRoutes: FastifyPluginAsyncZod = async (app) => {
  app.get(
    '/healthz',
    {
      schema: {
        tags: ['operations'],
        summary: 'Liveness: the process answers',
        response: { 200: z.object({ status: z.literal('ok') }).describe('The process answers') },
      },
    },
    async () => ({ status: 'ok' as const }),
  );

  app.get(
    '/readyz',
    {
      schema: {
        tags: ['operations'],
        summary: 'Readiness: Postgres reachable and not draining (Redis is reported; its loss degrades, it does not stop ingest)',
        response: {
          200: Readiness.describe('Ready: PostgreSQL answers and the replica is not draining'),
          503: Readiness.describe('Not ready: `checks` says what is wrong, in words'),
        },
      },
    },
    async (_request, reply) => {
      const checks = await app.ctx.readiness();
      // While draining, new agents must go elsewhere: leave the load balancer's rotation.
      if (!app.ctx.hub.accepting) checks.replica = 'draining';
      const ready = checks.postgres === 'ok' && app.ctx.hub.accepting;
      return reply.code(ready ? 200 : 503).send({ status: ready ? 'ready' : 'not_ready', checks });
    },
  );
};
