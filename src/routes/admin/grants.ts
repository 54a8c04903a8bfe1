import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { isUuid } from '../../agents/agent-store.js';
import { sendControl } from '../../fanout/control.js';
import { errorResponses, notFound } from '../../http/errors.js';
import { AgentIdParams, Grants } from './schemas.js';

const security = [{ adminToken: [] }];

export const grantRoutes: FastifyPluginAsyncZod = async (app) => {
  const { ctx } = app;

  app.put(
    '/agents/:id/grants',
    {
      schema: {
        tags: ['agents'],
        summary: "Replace the agent's grants: exact projects, and groups covering every project under them",
        security,
        params: AgentIdParams,
        body: Grants,
        response: { 200: Grants.describe('The grants as stored'), ...errorResponses(400, 401, 404) },
      },
    },
    async (request) => {
      const { id } = request.params;
      if (!isUuid(id) || !(await ctx.agents.setGrants(id, request.body))) throw notFound('agent');
      await sendControl(ctx, { type: 'agent_changed', agentId: id });
      return ctx.agents.getGrants(id);
    },
  );

  app.get(
    '/agents/:id/grants',
    {
      schema: {
        tags: ['agents'],
        summary: "The agent's grants",
        security,
        params: AgentIdParams,
        response: { 200: Grants.describe("The agent's grants"), ...errorResponses(401, 404) },
      },
    },
    async (request) => {
      if (!(await ctx.agents.get(request.params.id))) throw notFound('agent');
      return ctx.agents.getGrants(request.params.id);
    },
  );
};
