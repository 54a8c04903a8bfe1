/**
 * The status page's pages (overview, agent, event) and their live feed, behind sign-in. Sessions,
 * CSRF, security headers, errors and sign-in are routes.ts's.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { isUuid } from '../agents/agent-store.js';
import type { ConnectionRecord } from '../fanout/presence.js';
import { HttpError } from '../http/errors.js';
import type { Html } from './html.js';
import type { LiveClient, LiveView } from './live-feed.js';
import { sessionExists, type SessionStore } from './sessions.js';
import type { StatusQueries } from './status-queries.js';
import type { AgentStateView } from './templates/agents.js';
import { agentBody, eventBody, overviewBody } from './templates/pages.js';

const PAGE_SIZE = 50;

const SearchText = z.string().trim().max(200).optional().transform((s) => (s ? s : undefined));
const NameCursor = z.string().max(63).optional();
const IdCursor = z.string().regex(/^\d{1,19}$/, 'must be an event id').optional();

const OverviewQuery = z.object({
  agent: SearchText,
  project: SearchText,
  agents_after: NameCursor,
  agents_before: NameCursor,
  events_before: IdCursor,
  events_after: IdCursor,
});

const LiveQuery = z.object({
  view: z.enum(['overview', 'agent', 'event']),
  id: z.string().max(64).optional(),
  new: z.enum(['0', '1']).optional(),
  q: SearchText,
  agents: z.string().max(64 * PAGE_SIZE).optional(),
  from: z.string().max(64).optional(),
});

type App = Parameters<FastifyPluginAsyncZod>[0];

export function registerPages(
  app: App,
  deps: {
    queries: StatusQueries;
    requireSignIn: (request: FastifyRequest, reply: FastifyReply) => Promise<unknown>;
    sendPage: (reply: FastifyReply, status: number, title: string, body: Html, options?: { live?: string; current?: 'overview' }) => FastifyReply;
    sessions: SessionStore;
    ttlMs: number;
  },
): void {
  const { ctx } = app;
  const { queries, requireSignIn, sendPage, sessions: store, ttlMs } = deps;

  // --- pages -------------------------------------------------------------------------------

  /** Connections of these agents on every replica; undefined when presence cannot be read. */
  async function connectionsOf(agentIds: string[]): Promise<ConnectionRecord[][] | undefined> {
    try {
      return await Promise.all(agentIds.map((id) => ctx.presence.listForAgent(id)));
    } catch (err) {
      app.log.warn({ err: (err as Error).message }, 'status page: presence unavailable');
      return undefined;
    }
  }

  const liveUrl = (params: Record<string, string | undefined>) => {
    const query = new URLSearchParams({ from: ctx.live.position() });
    for (const [k, v] of Object.entries(params)) if (v !== undefined) query.set(k, v);
    return `/ui/live?${query.toString()}`;
  };

  app.get('/', { preHandler: requireSignIn, schema: { querystring: OverviewQuery } }, async (request, reply) => {
    const q = request.query;
    // Before reading: whatever comes after this, the live feed sends (the browser drops doubles).
    const live = liveUrl({});
    const [agents, total, events] = await Promise.all([
      queries.agents(q.agent, { after: q.agents_after, before: q.agents_before }, PAGE_SIZE),
      queries.countAgents(q.agent),
      queries.events(q.project, { before: q.events_before, after: q.events_after }, PAGE_SIZE),
    ]);
    const connections = await connectionsOf(agents.items.map((a) => a.id));
    const deployments = await ctx.clusterView.deploymentsOf(events.items.map((e) => e.id));
    const rows: AgentStateView[] = agents.items.map((a, i) => ({
      id: a.id,
      name: a.name,
      connections: connections?.[i] ?? [],
      lastConnectedAt: a.lastConnectedAt,
      presenceUnavailable: connections === undefined,
    }));
    const newest = !events.hasPrevious;
    const body = overviewBody({
      query: q,
      agents: { rows, total, hasPrevious: agents.hasPrevious, hasNext: agents.hasNext },
      events: { rows: events.items, hasPrevious: events.hasPrevious, hasNext: events.hasNext },
      deployments,
      presenceUnavailable: connections === undefined,
    });
    const liveParams = new URLSearchParams(live.split('?')[1]);
    liveParams.set('view', 'overview');
    liveParams.set('new', newest ? '1' : '0');
    if (q.project) liveParams.set('q', q.project);
    if (rows.length) liveParams.set('agents', rows.map((r) => r.id).join(','));
    return sendPage(reply, 200, 'Status', body, { live: `/ui/live?${liveParams.toString()}`, current: 'overview' });
  });

  app.get('/agents/:id', { preHandler: requireSignIn, schema: { params: z.object({ id: z.string().max(64) }) } }, async (request, reply) => {
    const live = liveUrl({ view: 'agent', id: request.params.id });
    const agent = await ctx.agents.get(request.params.id);
    if (!agent) throw new HttpError(404, 'not_found', 'There is no agent with this id (it may have been deleted).');
    const [grants, tokens, connections, objects, deployTokens] = await Promise.all([
      ctx.agents.getGrants(agent.id),
      ctx.tokens.list(agent.id),
      connectionsOf([agent.id]),
      ctx.clusterView.objectsOf(agent.id),
      ctx.credentials.list(agent.id),
    ]);
    const lastConnectedAt = tokens.map((t) => t.lastUsedAt).filter((t): t is string => t !== null).sort().at(-1) ?? null;
    const body = agentBody({
      agent,
      state: { id: agent.id, name: agent.name, connections: connections?.[0] ?? [], lastConnectedAt, presenceUnavailable: connections === undefined },
      grants,
      tokens,
      objects,
      deployTokens,
      gitlabApi: ctx.gitlabApi !== undefined,
    });
    return sendPage(reply, 200, `Agent ${agent.name}`, body, { live });
  });

  app.get('/events/:id', { preHandler: requireSignIn, schema: { params: z.object({ id: z.string().max(32) }) } }, async (request, reply) => {
    const live = liveUrl({ view: 'event', id: request.params.id });
    const event = await queries.event(request.params.id);
    if (!event) throw new HttpError(404, 'not_found', 'There is no event with this id (retention may have removed it).');
    const body = eventBody({ event, ...(await ctx.clusterView.eventDeployments(event.id)) });
    return sendPage(reply, 200, `Event #${event.id}`, body, { live });
  });

  // --- live updates ------------------------------------------------------------------------

  app.get(
    '/live',
    { preHandler: requireSignIn, sse: { kind: 'only', heartbeat: false, serializer: (data: unknown) => String(data) }, schema: { querystring: LiveQuery } },
    async (request, reply) => {
      const q = request.query;
      let view: LiveView;
      if (q.view === 'overview') {
        const ids = (q.agents ?? '').split(',').filter(isUuid);
        view = { view: 'overview', newEvents: q.new === '1', search: q.q, agentIds: new Set(ids) };
      } else if (q.view === 'agent' && q.id && isUuid(q.id)) {
        view = { view: 'agent', agentId: q.id };
      } else if (q.view === 'event' && q.id && /^\d{1,19}$/.test(q.id)) {
        view = { view: 'event', eventId: q.id };
      } else {
        throw new HttpError(400, 'invalid_request', 'view needs a valid id');
      }
      const sessionId = request.session.sessionId;
      const lastEventId = request.headers['last-event-id'];
      const from = ctx.live.parsePosition(typeof lastEventId === 'string' ? lastEventId : q.from);
      reply.sse.keepAlive();
      const client: LiveClient = {
        view,
        sessionId,
        expiresAt: request.session.get('signedInAt')! + ttlMs,
        sessionAlive: () => sessionExists(store, sessionId),
        send(frame) {
          if (!reply.sse.isConnected) return false;
          reply.sse.send({ id: frame.id, event: frame.event, data: frame.data }).catch(() => {});
          return true;
        },
        backlog: () => reply.raw.writableLength,
        close: () => reply.sse.close(),
      };
      reply.sse.onClose(() => ctx.live.disconnect(client));
      await ctx.live.connect(client, from);
    },
  );
}
