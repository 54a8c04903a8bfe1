import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { isUuid } from '../../agents/agent-store.js';
import { sendControl } from '../../fanout/control.js';
import { errorResponses, notFound } from '../../http/errors.js';
import { AgentIdParams, IssuedToken, TokenInfo } from './schemas.js';

const security = [{ adminToken: [] }];

export const tokenRoutes: FastifyPluginAsyncZod = async (app) => {
  const { ctx } = app;

  app.post(
    '/agents/:id/tokens',
    {
      schema: {
        tags: ['agents'],
        summary: 'Issue another token for the agent (for rotation); shown this once',
        security,
        params: AgentIdParams,
        response: { 201: IssuedToken.describe('The new token, its secret shown this once'), ...errorResponses(401, 404) },
      },
    },
    async (request, reply) => {
      const issued = isUuid(request.params.id) ? await ctx.tokens.issue(request.params.id) : undefined;
      if (!issued) throw notFound('agent');
      return reply.code(201).send({ ...issued.info, token: issued.token });
    },
  );

  app.get(
    '/agents/:id/tokens',
    {
      schema: {
        tags: ['agents'],
        summary: "The agent's tokens (never the secrets)",
        security,
        params: AgentIdParams,
        response: { 200: z.object({ tokens: z.array(TokenInfo) }).describe("The agent's tokens, without their secrets"), ...errorResponses(401, 404) },
      },
    },
    async (request) => {
      if (!(await ctx.agents.get(request.params.id))) throw notFound('agent');
      return { tokens: await ctx.tokens.list(request.params.id) };
    },
  );

  app.delete(
    '/agents/:id/tokens/:tokenId',
    {
      schema: {
        tags: ['agents'],
        summary: 'Revoke a token: every socket using it closes with 4401 on every replica',
        security,
        params: AgentIdParams.extend({ tokenId: z.string() }),
        response: { 200: TokenInfo.describe('The token, revoked (revoking it again changes nothing)'), ...errorResponses(401, 404) },
      },
    },
    async (request) => {
      const { id, tokenId } = request.params;
      const revoked = isUuid(id) && isUuid(tokenId) ? await ctx.tokens.revoke(id, tokenId) : undefined;
      if (!revoked) throw notFound('token');
      await sendControl(ctx, { type: 'revoke', agentId: id, tokenId });
      return revoked;
    },
  );
};
