/**
 * GET /agent/v1/connect: the kasgate.v1 WebSocket. The agent token is checked before the upgrade
 * (a bad one gets HTTP 401 and no socket); then frames flow as DESIGN.md "Agent protocol" says.
 */
import { readFile } from 'node:fs/promises';
import type { FastifySchemaCompiler } from 'fastify';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { buildAccess, type AgentAccess } from '../agents/access-rule.js';
import type { AuthenticatedToken } from '../agents/token-store.js';
import { isStoreUnavailable } from '../db/pool.js';
import { errorResponses, HttpError } from '../http/errors.js';
import { CloseCode, CONNECT_PATH, SUBPROTOCOL } from '../protocol/kasgate-v1.js';
import { openSession } from './agent-connection.js';

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
