import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { DuplicateAgentNameError } from '../../agents/agent-store.js';
import { generateToken } from '../../agents/token-store.js';
import { sendControl } from '../../fanout/control.js';
import { errorResponses, HttpError, notFound } from '../../http/errors.js';
import { ProjectPath } from '../../protocol/kasgate-v1.js';
import { Agent, AgentConfig, AgentIdParams, AgentName, IssuedToken } from './schemas.js';

const security = [{ adminToken: [] }];

const encodeCursor = (name: string) => Buffer.from(name, 'utf8').toString('base64url');
const decodeCursor = (cursor: string) => Buffer.from(cursor, 'base64url').toString('utf8');

export const agentRoutes: FastifyPluginAsyncZod = async (app) => {
  const { ctx } = app;

  app.post(
    '/agents',
    {
      schema: {
        tags: ['agents'],
        summary: 'Register an agent; its first token is in the answer, shown this once',
        security,
        body: z.object({ name: AgentName, configProject: ProjectPath, config: AgentConfig.optional() }),
        response: {
          201: z.object({ agent: Agent, token: IssuedToken }).describe('Registered: the agent, and its first token with the secret shown this once'),
          ...errorResponses(400, 401, [409, 'An agent of that name exists']),
        },
      },
    },
    async (request, reply) => {
      const fresh = generateToken();
      try {
        const created = await ctx.agents.create(
          { name: request.body.name, configProject: request.body.configProject, config: request.body.config ?? {} },
          fresh,
        );
        // With the GitLab API: the config file is read now (waiting a few seconds at most; a slow read lands later).
        let agent = created.agent;
        if (ctx.configFiles) {
          await ctx.configFiles.readNow(agent.id);
          agent = (await ctx.agents.get(agent.id)) ?? agent;
        }
        return reply.code(201).send({
          agent,
          token: {
            id: created.tokenId,
            token: fresh.token,
            prefix: fresh.prefix,
            createdAt: created.tokenCreatedAt,
            lastUsedAt: null,
            revokedAt: null,
          },
        });
      } catch (err) {
        if (err instanceof DuplicateAgentNameError) {
          throw new HttpError(409, 'agent_exists', `an agent named ${JSON.stringify(request.body.name)} already exists`);
        }
        throw err;
      }
    },
  );

  app.get(
    '/agents',
    {
      schema: {
        tags: ['agents'],
        summary: 'List agents by name, a page at a time',
        security,
        querystring: z.object({
          limit: z.coerce.number().int().min(1).max(500).default(50),
          cursor: z.string().max(1024).optional().meta({ description: 'nextCursor of the previous page' }),
        }),
        response: {
          200: z
            .object({ agents: z.array(Agent), nextCursor: z.string().nullable() })
            .describe('A page of agents by name; `nextCursor` is null on the last page'),
          ...errorResponses(400, 401),
        },
      },
    },
    async (request) => {
      const { limit, cursor } = request.query;
      const agents = await ctx.agents.list(limit + 1, cursor === undefined ? undefined : decodeCursor(cursor));
      const page = agents.slice(0, limit);
      return { agents: page, nextCursor: agents.length > limit ? encodeCursor(page.at(-1)!.name) : null };
    },
  );

  app.get(
    '/agents/:id',
    {
      schema: {
        tags: ['agents'],
        summary: 'One agent',
        security,
        params: AgentIdParams,
        response: { 200: Agent.describe('The agent'), ...errorResponses(401, 404) },
      },
    },
    async (request) => {
      const agent = await ctx.agents.get(request.params.id);
      if (!agent) throw notFound('agent');
      return agent;
    },
  );

  app.patch(
    '/agents/:id',
    {
      schema: {
        tags: ['agents'],
        summary: "Change an agent's config (its config file's keys still override it; live connections get a config frame) or configuration project",
        security,
        params: AgentIdParams,
        body: z.object({ config: AgentConfig.optional(), configProject: ProjectPath.optional() }),
        response: { 200: Agent.describe('The agent as changed'), ...errorResponses(400, 401, 404) },
      },
    },
    async (request) => {
      const agent = await ctx.agents.update(request.params.id, request.body);
      if (!agent) throw notFound('agent');
      if (request.body.configProject !== undefined) {
        await sendControl(ctx, { type: 'agent_changed', agentId: agent.id });
        ctx.fluxAccess.changed(agent.id);
        // Another project holds another config file: read it now.
        ctx.configFiles?.readNow(agent.id).catch(() => {});
      }
      if (request.body.config !== undefined) await sendControl(ctx, { type: 'agent_config', agentId: agent.id, config: agent.config });
      return agent;
    },
  );

  app.delete(
    '/agents/:id',
    {
      schema: {
        tags: ['agents'],
        summary: 'Delete an agent: its tokens stop working and its sockets close with 4401 on every replica',
        security,
        params: AgentIdParams,
        response: { 204: z.null().describe('Deleted'), ...errorResponses(401, 404) },
      },
    },
    async (request, reply) => {
      if (!(await ctx.agents.delete(request.params.id))) throw notFound('agent');
      await sendControl(ctx, { type: 'revoke', agentId: request.params.id });
      ctx.fluxAccess.changed(request.params.id);
      return reply.code(204).send(null);
    },
  );
};
