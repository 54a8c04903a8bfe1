/**
 * GET /agent/v1/connect: the kasgate.v1 WebSocket. The agent token is checked before the upgrade
 * (a bad one gets HTTP 401 and no socket); then frames flow as DESIGN.md "Agent protocol" says.
 */
import { randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { FastifySchemaCompiler } from 'fastify';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import type { RawData, WebSocket } from 'ws';
import { z } from 'zod';
import { buildAccess, VISIBILITY_PUBLIC, type AgentAccess } from '../agents/access-rule.js';
import type { AuthenticatedToken } from '../agents/token-store.js';
import { isStoreUnavailable } from '../db/pool.js';
import { stableJson } from '../agents/config-file/parse.js';
import { AgentSession } from '../fanout/agent-session.js';
import { replay, whileOpen } from '../fanout/replay.js';
import { errorResponses, HttpError } from '../http/errors.js';
import {
  CloseCode,
  CONNECT_PATH,
  ErrorCode,
  parseClientFrame,
  SUBPROTOCOL,
  type SubscribeFrame,
} from '../protocol/kasgate-v1.js';
import type { AppContext } from '../context.js';

declare module 'fastify' {
  interface FastifyRequest {
    agentAuth?: { token: AuthenticatedToken; access: AgentAccess };
  }
}

/** The frame reference (docs/protocol.md), served beside the socket; both src/ and dist/ are two levels below it. */
export const PROTOCOL_DOC_PATH = '/agent/v1/protocol.md';
const PROTOCOL_DOC = new URL('../../docs/protocol.md', import.meta.url);

const closeCodes = [
  [CloseCode.ReplicaShutdown, 'the replica is shutting down: reconnect now, to any replica'],
  [CloseCode.SlowConsumer, 'the agent did not read its frames fast enough: reconnect and resume'],
  [CloseCode.ProtocolViolation, 'repeated protocol violations, or a frame over the size limit'],
  [CloseCode.Revoked, 'token revoked or agent deleted: do not reconnect with the same token'],
  [CloseCode.HeartbeatMissed, 'no pong within two heartbeat intervals'],
  [CloseCode.TooManyConnections, 'too many connections for this agent (KASGATE_MAX_CONNECTIONS_PER_AGENT)'],
] as const;

const connectDescription = [
  `A WebSocket upgrade (RFC 6455) offering the subprotocol \`${SUBPROTOCOL}\` in \`Sec-WebSocket-Protocol\`, with an agent `,
  'token as `Authorization: Bearer kgagent_…`. Both are checked before the upgrade: a refusal is an HTTP answer with the ',
  'error body and no socket. After 101 the server sends `hello`, the agent `subscribe`s, and events flow as JSON text ',
  `frames: see the frame reference at [${PROTOCOL_DOC_PATH}](${PROTOCOL_DOC_PATH}) (docs/protocol.md).\n\n`,
  'Close codes:\n\n',
  ...closeCodes.map(([code, meaning]) => `- \`${code}\`: ${meaning}\n`),
].join('');

/** Documented, never validated: the preValidation hook below checks these itself, in the contract's words. */
const documentedOnly: FastifySchemaCompiler<unknown> = () => () => true;

const ConnectHeaders = z.object({
  Upgrade: z.literal('websocket').describe('WebSocket upgrade'),
  Connection: z.string().describe('`Upgrade`'),
  'Sec-WebSocket-Protocol': z.string().describe(`Must offer \`${SUBPROTOCOL}\` (the server answers with it)`),
  'Sec-WebSocket-Version': z.literal('13'),
  'Sec-WebSocket-Key': z.string().describe('Per RFC 6455'),
});

const bearer = (header: string | undefined) => /^Bearer\s+(\S+)$/i.exec(header ?? '')?.[1];

function byteLength(data: RawData): number {
  if (Array.isArray(data)) return data.reduce((n, b) => n + b.length, 0);
  return data instanceof ArrayBuffer ? data.byteLength : data.length;
}

function text(data: RawData): string {
  if (Array.isArray(data)) return Buffer.concat(data).toString('utf8');
  return Buffer.from(data as ArrayBuffer).toString('utf8');
}

export const agentSocketRoutes: FastifyPluginAsyncZod = async (app) => {
  const { ctx } = app;
  const { limits } = ctx.config;
  const limitAuthFailures = app.rateLimit({
    max: limits.authFailuresPerMinute,
    timeWindow: 60_000,
    keyGenerator: (request) => request.ip,
    errorResponseBuilder: (_request, context) =>
      new HttpError(429, 'too_many_auth_failures', `too many failed agent authentications; retry in ${context.after}`),
  });

  app.addHook('preValidation', async (request, reply) => {
    if (!ctx.hub.accepting) throw new HttpError(503, 'draining', 'this replica is shutting down; connect to another');
    const offered = String(request.headers['sec-websocket-protocol'] ?? '').split(',').map((p) => p.trim());
    if (!offered.includes(SUBPROTOCOL)) {
      throw new HttpError(400, 'unsupported_protocol', `offer the WebSocket subprotocol ${SUBPROTOCOL}`);
    }
    const presented = bearer(request.headers.authorization);
    let token: AuthenticatedToken | undefined;
    try {
      token = presented ? await ctx.tokens.authenticate(presented) : undefined;
    } catch (err) {
      if (isStoreUnavailable(err)) throw new HttpError(503, 'store_unavailable', 'the database is unavailable; retry later');
      throw err;
    }
    if (!token) {
      ctx.metrics.authFailures.inc();
      await limitAuthFailures.call(app, request, reply);
      throw new HttpError(401, 'unauthorized', 'a valid agent token is required: Authorization: Bearer kgagent_…');
    }
    request.agentAuth = { token, access: buildAccess(token.agentId, token.configProject, token.grants, token.fluxAccess) };
  });

  // @fastify/websocket hides every socket route from the OpenAPI document; this one is documented.
  app.addHook('onRoute', (route) => {
    if (route.url === CONNECT_PATH && route.websocket && route.schema) route.schema.hide = false;
  });

  app.get(
    CONNECT_PATH,
    {
      websocket: true,
      validatorCompiler: documentedOnly,
      schema: {
        tags: ['agents'],
        summary: `The agent WebSocket (subprotocol ${SUBPROTOCOL})`,
        description: connectDescription,
        externalDocs: { description: `${SUBPROTOCOL} frame reference`, url: PROTOCOL_DOC_PATH },
        security: [{ agentToken: [] }],
        headers: ConnectHeaders,
        response: {
          101: z.null().describe(`Switching Protocols: the socket speaks ${SUBPROTOCOL}; the first frame is \`hello\``),
          ...errorResponses(
            [400, `unsupported_protocol: ${SUBPROTOCOL} is not among the offered subprotocols`],
            [401, 'unauthorized: no agent token, or not a live one (revoked, agent deleted)'],
            [429, 'too_many_auth_failures: too many failed authentications from this address (KASGATE_AUTH_FAILURES_PER_MINUTE)'],
            [503, 'draining (this replica is shutting down: connect to another) or store_unavailable (retry later)'],
          ),
        },
      },
    },
    (socket, request) => {
      const auth = request.agentAuth!;
      openSession(ctx, socket, auth.token, auth.access, request.ip);
    },
  );
};

/** GET /agent/v1/protocol.md: the frame reference the OpenAPI document links to (outside the socket's hooks). */
export const protocolDocRoutes: FastifyPluginAsyncZod = async (app) => {
  const protocolDoc = await readFile(PROTOCOL_DOC, 'utf8').catch(() => undefined);
  app.get(PROTOCOL_DOC_PATH, { schema: { hide: true } }, async (_request, reply) => {
    if (protocolDoc === undefined) throw new HttpError(404, 'not_found', 'the frame reference (docs/protocol.md) is not installed');
    return reply.type('text/markdown; charset=utf-8').send(protocolDoc);
  });
};

function openSession(ctx: AppContext, ws: WebSocket, token: AuthenticatedToken, access: AgentAccess, remoteAddress: string) {
  const { config, hub, presence, metrics, log } = ctx;
  const { limits } = config;
  const { agentId, tokenId } = token;
  const session = new AgentSession(
    { connectionId: randomUUID(), agentId, agentName: token.agentName, tokenId, replicaId: config.replicaId, remoteAddress },
    access,
    ws,
    { maxSendBufferBytes: limits.maxSendBufferBytes },
    {
      onSlowConsumer: () => metrics.slowConsumersClosed.inc(),
      onTaskFailed: (err) => log.error({ err, agentId, connectionId: session.id.connectionId }, 'agent session task failed; closing the socket'),
    },
  );
  // Log fields inline rather than a child logger per connection: at 20,000 sockets it shows.
  const where = () => ({ agentId, connectionId: session.id.connectionId });
  const status = ctx.cluster.connection(agentId, session.id.connectionId, {
    sendError: (code, message) => session.sendError(code, message),
  });
  // Kept only until the hello frame is sent.
  let hello: Record<string, unknown> | undefined = token.config;
  let registered = false;

  session.enqueue(async () => {
    let result = await presence.register(session.record(), limits.maxConnectionsPerAgent).catch((err: Error) => {
      log.warn({ ...where(), err: err.message }, 'presence unavailable; counting this replica only');
      return 'unavailable' as const;
    });
    if (result === 'unavailable' && hub.localCount(agentId) >= limits.maxConnectionsPerAgent) result = 'over_limit';
    if (result === 'over_limit') {
      session.close(CloseCode.TooManyConnections, `at most ${limits.maxConnectionsPerAgent} connections per agent`);
      return;
    }
    registered = true;
    if (!session.isOpen) {
      await presence.remove(session.record()).catch(() => {});
      return;
    }
    hub.add(session);
    ctx.tokens.markUsed(tokenId);
    session.send({
      type: 'hello',
      agentId,
      connectionId: session.id.connectionId,
      heartbeatSeconds: config.heartbeatSeconds,
      config: hello ?? {},
      limits: { maxFrameBytes: limits.maxFrameBytes, maxStatusObjects: config.maxStatusObjects },
    });
    session.sentConfig = stableJson(hello ?? {});
    hello = undefined;
    // A revocation or grant change that raced the upgrade found no socket here to apply to: look again.
    const [active] = await Promise.all([
      ctx.tokens.isActive(tokenId).catch(() => true),
      hub.refreshAccess(agentId).catch((err: Error) => log.warn({ ...where(), err: err.message }, 'could not re-read agent access')),
    ]);
    if (!active) {
      session.close(CloseCode.Revoked, 'token revoked');
      return;
    }
    log.info({ ...where(), agentName: session.id.agentName, remoteAddress }, 'agent connected');
    // Deploy tokens still waiting for this agent (made while it was away, or unanswered); none without flux_access.
    if (token.fluxAccess?.entries.length) ctx.credentials.connected(session);
  });

  const reject = (code: string, message: string) => {
    metrics.framesRejected.inc({ code });
    session.badFrames++;
    session.sendError(code, message);
    if (session.badFrames >= limits.maxBadFrames) {
      session.close(CloseCode.ProtocolViolation, `${limits.maxBadFrames} bad frames in a row`);
    }
  };

  ws.on('message', (data: RawData, isBinary: boolean) => {
    if (byteLength(data) > limits.maxFrameBytes) {
      metrics.framesRejected.inc({ code: 'frame_too_large' });
      session.close(CloseCode.ProtocolViolation, `frame over ${limits.maxFrameBytes} bytes`);
      return;
    }
    if (isBinary) return reject(ErrorCode.InvalidFrame, 'frames must be JSON text');
    const parsed = parseClientFrame(text(data));
    if (!parsed.ok) return reject(parsed.code, parsed.message);
    const frame = parsed.frame;
    if (frame.type === 'subscribe' && frame.projects.length > limits.maxProjectsPerSubscribe) {
      return reject(ErrorCode.TooManyProjects, `a subscribe may name at most ${limits.maxProjectsPerSubscribe} projects`);
    }
    session.badFrames = 0;
    if (frame.type === 'ack') ctx.cursors.ack(agentId, frame.eventId);
    else if (frame.type === 'subscribe') session.enqueue(() => subscribe(ctx, session, frame));
    else if (frame.type === 'status') {
      // Written in the background (src/cluster); the socket never waits for Postgres.
      const taken = status.receive(frame);
      if (!taken.ok) return reject(taken.code, taken.message);
    }
    else if (frame.type === 'credentials_applied' || frame.type === 'credentials_failed') {
      ctx.credentials.received(agentId, frame).catch((err: Error) => log.warn({ ...where(), err: err.message }, 'could not record the answer to credentials; they are sent again'));
    }
  });

  ws.on('pong', () => {
    session.lastPongAt = Date.now();
  });
  ws.on('error', (err) => log.debug({ ...where(), err: err.message }, 'agent socket error'));
  ws.on('close', (code: number) => {
    hub.remove(session);
    status.close();
    // The agent may resume on another replica within a second: hand its acks over now.
    ctx.cursors.flushSoon();
    if (registered) presence.remove(session.record()).catch(() => {});
    log.info({ ...where(), code }, 'agent disconnected');
  });
}

async function subscribe(ctx: AppContext, session: AgentSession, frame: SubscribeFrame): Promise<void> {
  if (!session.isOpen) return;
  const first = !session.subscribedOnce;
  session.subscribedOnce = true;
  let resumeFrom = frame.resumeAfter;
  if (resumeFrom === undefined && first) {
    const stored = await whileOpen(session, ctx, async () => ({ cursor: await ctx.cursors.get(session.agentId) }));
    if (!stored) return;
    resumeFrom = stored.cursor;
    // An agent with no position yet starts live from here; remember it, so that if it drops
    // before its first ack it still resumes from this point rather than from "now".
    if (resumeFrom === undefined) {
      ctx.cursors.ack(session.agentId, ctx.dispatcher.highestDispatched);
    }
  }
  const wanted = [...new Set(frame.projects)];
  const visibility = await ctx.projects
    .visibilities(wanted.map((p) => p.toLowerCase()))
    .catch(() => new Map<string, number | null>());
  if (ctx.projectVisibility) {
    // Projects not yet known public nor granted: GitLab may say they are public (cached, bounded wait).
    const unknown = wanted.filter((p) => visibility.get(p.toLowerCase()) !== VISIBILITY_PUBLIC && !session.isGrantedPath(p));
    if (unknown.length > 0) {
      for (const path of await ctx.projectVisibility.publicAmong(unknown)) visibility.set(path, VISIBILITY_PUBLIC);
    }
  }
  if (!session.isOpen) return;

  // From here to the replay's start nothing awaits: live events are buffered from this instant.
  ctx.hub.subscribe(session, wanted, resumeFrom !== undefined);
  session.send({ type: 'subscribed', projects: session.subscriptionAnswer(visibility) });
  ctx.presence.put(session.record()).catch((err: Error) => ctx.log.warn({ err: err.message }, 'presence write failed; the heartbeat retries'));
  if (resumeFrom !== undefined) {
    session.resumeAfter(resumeFrom);
    await replay(session, ctx);
  }
}
