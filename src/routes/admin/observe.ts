/** Read-only views: live connections (presence, all replicas), a project's watchers, the event log. */
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { buildAccess, isWellFormedPath, normalizePath, subscriptionAccess } from '../../agents/access-rule.js';
import { errorResponses, HttpError, notFound } from '../../http/errors.js';
import { EventId } from '../../protocol/kasgate-v1.js';
import { AgentIdParams, Connections } from './schemas.js';

const security = [{ adminToken: [] }];

/** The router decodes once; a path sent encoded twice (a%252Fb) decodes again. Bad escapes stay as they are. */
function decodeProjectParam(raw: string): string {
  try {
    return decodeURIComponent(raw);
  } catch {
    return raw;
  }
}

const loggedCommon = {
  id: z.string(),
  projectId: z.number(),
  projectPath: z.string(),
  visibility: z.number().nullable().meta({ description: 'visibility_level the event carried (a registry event: the last one seen); null when unknown' }),
  defaultBranch: z.string().nullable(),
  userUsername: z.string().nullable().meta({ description: 'Who pushed (a registry event: the actor the registry named)' }),
  receivedAt: z.string(),
  deliveredCount: z.number().meta({ description: 'How many agents it was delivered to (live or by replay; an agent counts once, whatever its connections)' }),
};

export const LoggedPush = z
  .object({
    kind: z.enum(['push', 'tag_push']),
    ...loggedCommon,
    ref: z.string(),
    before: z.string().nullable().meta({ description: 'null when GitLab did not say (unknown, not "branch created")' }),
    after: z.string(),
    checkoutSha: z.string().nullable(),
  })
  .meta({ id: 'PushEvent', description: 'A push or tag push (project, group or system hook)' });

export const LoggedPipelineArtifact = z
  .object({
    kind: z.literal('artifact'),
    source: z.literal('pipeline'),
    ...loggedCommon,
    ref: z.string().meta({ description: 'The full ref the pipeline ran for (refs/heads/…, refs/tags/…)' }),
    sha: z.string().meta({ description: 'The commit the pipeline ran on' }),
    pipelineId: z.number(),
  })
  .meta({ id: 'PipelineArtifactEvent', description: 'A pipeline that succeeded (Pipeline Hook, status success)' });

export const LoggedRegistryArtifact = z
  .object({
    kind: z.literal('artifact'),
    source: z.literal('registry'),
    ...loggedCommon,
    repository: z.string().meta({ description: 'The registry repository (the project path, or under it)' }),
    tag: z.string(),
    digest: z.string().nullable(),
  })
  .meta({ id: 'RegistryArtifactEvent', description: 'A tag pushed to the container registry' });

export const LoggedEvent = z
  .union([LoggedPush, LoggedPipelineArtifact, LoggedRegistryArtifact])
  .meta({ id: 'Event', description: 'An event of the log: a push, or an artifact (source pipeline or registry)' });

const ProjectView = z.object({
  project: z
    .object({
      id: z.number(),
      path: z.string(),
      visibility: z.number().nullable(),
      defaultBranch: z.string().nullable(),
      lastEventId: z.string().nullable(),
      updatedAt: z.string(),
    })
    .nullable()
    .meta({ description: 'As last seen in a push; null when no push was seen yet' }),
  watchers: z.array(
    z.object({
      agentId: z.string(),
      agentName: z.string(),
      connectionId: z.string(),
      replicaId: z.string(),
      access: z.enum(['granted', 'unverified']),
    }),
  ),
});

export const observeRoutes: FastifyPluginAsyncZod = async (app) => {
  const { ctx } = app;

  app.get(
    '/connections',
    {
      schema: {
        tags: ['observe'],
        summary: 'Live agent connections on every replica',
        security,
        response: { 200: Connections.describe('Every live agent connection'), ...errorResponses(401) },
      },
    },
    async () => ({ connections: await ctx.presence.list() }),
  );

  app.get(
    '/agents/:id/connections',
    {
      schema: {
        tags: ['observe'],
        summary: "The agent's live connections on every replica",
        security,
        params: AgentIdParams,
        response: { 200: Connections.describe("The agent's live connections"), ...errorResponses(401, 404) },
      },
    },
    async (request) => {
      if (!(await ctx.agents.get(request.params.id))) throw notFound('agent');
      return { connections: await ctx.presence.listForAgent(request.params.id) };
    },
  );

  app.get(
    '/projects/*',
    {
      schema: {
        tags: ['observe'],
        summary: 'A project by numeric id or path (plain or URL-encoded): last known state, and who watches it',
        security,
        params: z.object({ '*': z.string().min(1).max(1024) }),
        response: { 200: ProjectView.describe('The project as last seen, and the connections watching it'), ...errorResponses(400, 401, 404) },
      },
    },
    async (request) => {
      const idOrPath = decodeProjectParam(request.params['*']);
      if (!/^\d{1,18}$/.test(idOrPath) && !isWellFormedPath(idOrPath)) {
        throw new HttpError(400, 'invalid_request', 'expected a numeric project id or a project path such as group/project');
      }
      const project = await ctx.projects.find(idOrPath);
      const path = normalizePath(project?.path ?? idOrPath);
      const watching = (await ctx.presence.list()).filter((c) => c.projects.some((p) => normalizePath(p) === path));
      if (!project && watching.length === 0) throw notFound('project');
      const inputs = await ctx.agents.accessInputs([...new Set(watching.map((c) => c.agentId))]);
      const watchers = watching.flatMap((c) => {
        const input = inputs.get(c.agentId);
        if (!input) return [];
        const access = subscriptionAccess(buildAccess(c.agentId, input.configProject, input.grants, input.fluxAccess), path, project?.visibility);
        return [{ agentId: c.agentId, agentName: c.agentName, connectionId: c.connectionId, replicaId: c.replicaId, access }];
      });
      return { project: project ?? null, watchers };
    },
  );

  app.get(
    '/events',
    {
      schema: {
        tags: ['observe'],
        summary: 'The event log (pushes and artifacts), oldest first, after an event id',
        security,
        querystring: z.object({
          project: z.string().min(1).max(1024).optional().meta({ description: 'Project path (any case) or numeric id' }),
          after: EventId.optional(),
          limit: z.coerce.number().int().min(1).max(1000).default(100),
        }),
        response: {
          200: z
            .object({ events: z.array(LoggedEvent), nextAfter: z.string().nullable() })
            .describe('A page of events, oldest first; `nextAfter` is null when the page was not full'),
          ...errorResponses(400, 401),
        },
      },
    },
    async (request) => {
      const { project, after, limit } = request.query;
      const events = await ctx.events.list({ project, after, limit });
      return { events, nextAfter: events.length === limit ? events.at(-1)!.id : null };
    },
  );
};
