import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';

export const metricsRoutes: FastifyPluginAsyncZod = async (app) => {
  app.get(
    '/metrics',
    {
      schema: {
        tags: ['operations'],
        summary: 'Prometheus text exposition',
        description:
          'No authentication, as is usual for a Prometheus scrape target: the series carry counts and ' +
          'latencies labelled by route, status, webhook kind and close code, never a secret, token, project ' +
          'path or agent name. Where that is still too much, keep the port from the outside (the ' +
          'deploy/gateway network-policy component admits only the ingress controller, GitLab, agents and ' +
          'the monitoring namespace).',
        produces: ['text/plain'],
        response: { 200: z.string().meta({ description: 'Metrics in the Prometheus text format (version 0.0.4)' }) },
      },
    },
    async (_request, reply) => {
      const { registry } = app.ctx.metrics;
      return reply.type(registry.contentType).send(await registry.metrics());
    },
  );
};
