/** The admin API under /api/v1, behind the admin bearer token (compared in constant time). */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { HttpError } from '../../http/errors.js';
import { agentRoutes } from './agents.js';
import { tokenRoutes } from './tokens.js';
import { grantRoutes } from './grants.js';
import { observeRoutes } from './observe.js';
import { deploymentRoutes } from './deployments.js';
import { credentialRoutes } from './credentials.js';

const digest = (value: string) => createHash('sha256').update(value).digest();

export const adminRoutes: FastifyPluginAsyncZod = async (app) => {
  const expected = digest(app.ctx.adminToken);
  app.addHook('onRequest', async (request, reply) => {
    const presented = /^Bearer\s+(\S+)$/i.exec(request.headers.authorization ?? '')?.[1];
    if (presented === undefined || !timingSafeEqual(digest(presented), expected)) {
      void reply.header('www-authenticate', 'Bearer realm="kasgate-admin"');
      throw new HttpError(401, 'unauthorized', 'a valid admin token is required: Authorization: Bearer <KASGATE_ADMIN_TOKEN>');
    }
  });
  await app.register(agentRoutes);
  await app.register(tokenRoutes);
  await app.register(grantRoutes);
  await app.register(observeRoutes);
  await app.register(deploymentRoutes);
  await app.register(credentialRoutes);
};
