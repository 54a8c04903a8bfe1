/**
 * buildApp(context): the fastify application with its plugins and routes, not listening.
 * Routes reach the domain through the context; nothing here owns state.
 */
import Fastify, { LogController, type FastifyBaseLogger, type FastifyHttpOptions, type FastifyInstance } from 'fastify';
import type { Server } from 'node:http';
import type { Socket } from 'node:net';
import websocket from '@fastify/websocket';
import rateLimit from '@fastify/rate-limit';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import {
  jsonSchemaTransform,
  jsonSchemaTransformObject,
  serializerCompiler,
  validatorCompiler,
  type ZodTypeProvider,
} from 'fastify-type-provider-zod';
import type { AppContext } from './context.js';
import { installErrorHandling } from './http/errors.js';
import { CloseCode, SUBPROTOCOL } from './protocol/kasgate-v1.js';
import { healthRoutes } from './routes/health.js';
import { metricsRoutes } from './routes/metrics.js';
import { webhookRoutes, webhookSecuritySchemes } from './routes/webhooks.js';
import { agentSocketRoutes, protocolDocRoutes } from './routes/agent-socket.js';
import { adminRoutes } from './routes/admin/index.js';
import { uiRoutes } from './ui/routes.js';

export const API_VERSION = '0.1.0';

declare module 'fastify' {
  interface FastifyInstance {
    ctx: AppContext;
  }
}

export async function buildApp(ctx: AppContext): Promise<FastifyInstance> {
  const trustProxy: FastifyHttpOptions<Server>['trustProxy'] = ctx.config.trustProxy;
  const app = Fastify({
    loggerInstance: ctx.log as FastifyBaseLogger,
    // Requests are logged at debug level by the onResponse hook below, not twice at info.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: ctx.config.maxBodyBytes,
    return503OnClosing: true,
    trustProxy,
    forceCloseConnections: 'idle',
  }).withTypeProvider<ZodTypeProvider>();

  app.decorate('ctx', ctx);
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  installErrorHandling(app);

  // Browsers open sockets before they need them (preconnect). Node does not count a socket that
  // never carried a request as idle, so it would hold a shutdown for headersTimeout (60 s).
  const unused = new Set<Socket>();
  app.server.on('connection', (socket: Socket) => {
    unused.add(socket);
    socket.once('close', () => unused.delete(socket));
  });
  app.addHook('onRequest', async (request) => {
    unused.delete(request.raw.socket);
  });
  app.addHook('preClose', async () => {
    for (const socket of unused) socket.destroy();
  });

  app.addHook('onResponse', async (request, reply) => {
    const route = request.routeOptions.url ?? 'unmatched';
    ctx.metrics.httpDuration.observe(
      { method: request.method, route, status_code: String(reply.statusCode) },
      reply.elapsedTime / 1000,
    );
    request.log.debug({ method: request.method, route, status: reply.statusCode, ms: reply.elapsedTime }, 'request');
  });

  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'kasgate',
        version: API_VERSION,
        description:
          'Instant GitOps for GitLab: takes push, pipeline and container registry webhooks and notifies the agents allowed to see each project over their WebSockets.',
      },
      components: {
        securitySchemes: {
          adminToken: { type: 'http', scheme: 'bearer', description: 'KASGATE_ADMIN_TOKEN' },
          agentToken: { type: 'http', scheme: 'bearer', description: 'An agent token (kgagent_…): kasgate agents create, kasgate tokens create' },
          ...webhookSecuritySchemes,
        },
      },
      tags: [
        { name: 'webhooks', description: 'GitLab project, group and system hooks; container registry notifications' },
        { name: 'agents', description: 'Agent registry, tokens and grants' },
        { name: 'observe', description: 'Connections, projects and the event log' },
        { name: 'operations', description: 'Health, readiness, metrics' },
      ],
    },
    transform: jsonSchemaTransform,
    transformObject: jsonSchemaTransformObject,
  });
  await app.register(swaggerUi, { routePrefix: '/docs' });
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());

  await app.register(rateLimit, {
    global: false,
    ...(ctx.redis ? { redis: ctx.redis, nameSpace: `${ctx.config.redisPrefix}ratelimit:` } : {}),
    skipOnError: true,
  });
  await app.register(websocket, {
    options: {
      // Frames over the protocol limit are closed with 4400 by the socket route; ws itself closes
      // (1009) only past this ceiling, which bounds what a peer can make us buffer.
      maxPayload: Math.max(4 * ctx.config.limits.maxFrameBytes, 1_048_576),
      perMessageDeflate: false,
      handleProtocols: (offered: Set<string>) => (offered.has(SUBPROTOCOL) ? SUBPROTOCOL : false),
    },
    preClose: async function closeRemainingSockets() {
      for (const client of app.websocketServer.clients) client.close(CloseCode.ReplicaShutdown, 'replica shutting down');
      await new Promise<void>((resolve) => app.websocketServer.close(() => resolve()));
    },
  });

  await app.register(healthRoutes);
  await app.register(metricsRoutes);
  await app.register(webhookRoutes);
  await app.register(agentSocketRoutes);
  await app.register(protocolDocRoutes);
  await app.register(adminRoutes, { prefix: '/api/v1' });
  await app.register(uiRoutes, { prefix: '/ui' });
  return app;
}
