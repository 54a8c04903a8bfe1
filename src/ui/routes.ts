/**
 * /ui: the status page (DESIGN.md "Status page"), server-rendered, behind a sign-in with the admin
 * token. Everything here is encapsulated: cookies, sessions, CSRF, form bodies, security headers
 * and server-sent events apply to /ui only, and none of it is in the OpenAPI document. Here the
 * plugins, the errors and sign-in; the pages and their live feed are page-routes.ts.
 */
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import cookie from '@fastify/cookie';
import session from '@fastify/session';
import csrf from '@fastify/csrf-protection';
import formbody from '@fastify/formbody';
import helmet from '@fastify/helmet';
import sseModule, { type fastifySSE } from '@fastify/sse';
import { isStoreUnavailable } from '../db/pool.js';
import { HttpError, isRedisUnavailable } from '../http/errors.js';
import { secretSet } from '../http/secret-match.js';
import { loadAssets } from './assets.js';
import { registerPages } from './page-routes.js';
import type { Html } from './html.js';
import { createRedisSessionStore, derivedSecret, type SessionStore } from './sessions.js';
import { createStatusQueries } from './status-queries.js';
import { layout } from './templates/layout.js';
import { loginBody } from './templates/login.js';
import { errorBody } from './templates/pages.js';

// The package's types describe its default export as the module; at run time it is the plugin (wrapped
// by fastify-plugin, so that its route option reaches the routes of this scope).
const sse = sseModule as unknown as typeof fastifySSE;

const SESSION_COOKIE = 'kasgate_session';
const CSRF_COOKIE = 'kasgate_csrf';
const REFUSED = 'That is not the admin token.';

/** A local /ui path to return to after sign-in, or /ui: never another host. */
export function safeNext(next: string | undefined): string {
  if (!next || !next.startsWith('/ui') || next.includes('\\')) return '/ui';
  const url = new URL(next, 'http://kasgate.invalid');
  if (url.host !== 'kasgate.invalid' || !/^\/ui(\/|$)/.test(url.pathname)) return '/ui';
  return url.pathname + url.search;
}

export const uiRoutes: FastifyPluginAsyncZod = async (app) => {
  const { ctx } = app;
  const ttlMs = ctx.config.uiSessionTtlMs;
  const assets = loadAssets();
  const queries = createStatusQueries(ctx.pool);
  const adminToken = secretSet([ctx.adminToken]);
  const store: SessionStore = ctx.redis
    ? createRedisSessionStore(ctx.redis, ctx.config.redisPrefix, ttlMs)
    : new session.MemoryStore();

  app.addHook('onRoute', (route) => {
    route.schema = { ...route.schema, hide: true };
  });

  await app.register(helmet, {
    // Only the page's own assets; no inline script or style, no other host, never in a frame.
    contentSecurityPolicy: {
      useDefaults: false,
      directives: {
        defaultSrc: ["'none'"],
        scriptSrc: ["'self'"],
        styleSrc: ["'self'"],
        imgSrc: ["'self'"],
        connectSrc: ["'self'"],
        formAction: ["'self'"],
        frameAncestors: ["'none'"],
        baseUri: ["'none'"],
        objectSrc: ["'none'"],
      },
    },
    // Not includeSubDomains: the gateway does not speak for the other hosts of its domain.
    strictTransportSecurity: { maxAge: 31_536_000, includeSubDomains: false },
    xFrameOptions: { action: 'deny' },
    referrerPolicy: { policy: 'no-referrer' },
    crossOriginEmbedderPolicy: true,
    crossOriginResourcePolicy: { policy: 'same-origin' },
  });
  await app.register(cookie, { secret: derivedSecret(ctx.adminToken, 'csrf-cookie') });
  await app.register(session, {
    secret: derivedSecret(ctx.adminToken, 'session-cookie'),
    cookieName: SESSION_COOKIE,
    store,
    // A session exists only once someone signed in; anonymous visits write nothing.
    saveUninitialized: false,
    // The session ends uiSessionTtlMs after sign-in, however busy it is.
    rolling: false,
    cookie: { path: '/ui', httpOnly: true, sameSite: 'strict', secure: false, maxAge: ttlMs },
  });
  await app.register(csrf, {
    cookieKey: CSRF_COOKIE,
    cookieOpts: { path: '/ui', sameSite: 'strict', httpOnly: true, signed: true },
  });
  await app.register(formbody);
  await app.register(sse, { heartbeatInterval: 0 });

  const isHttps = (request: FastifyRequest) => request.protocol === 'https';
  const signedIn = (request: FastifyRequest): boolean => {
    const at = request.session?.get('signedInAt');
    return typeof at === 'number' && Date.now() - at < ttlMs;
  };
  const csrfToken = (reply: FastifyReply) => reply.generateCsrf({ secure: isHttps(reply.request) });

  function sendPage(reply: FastifyReply, status: number, title: string, body: Html, options: { live?: string; current?: 'overview' } = {}) {
    const signed = signedIn(reply.request);
    const page = layout({
      title,
      assets,
      body,
      csrfToken: signed ? csrfToken(reply) : undefined,
      liveUrl: options.live,
      replicaId: signed ? ctx.config.replicaId : undefined,
      current: options.current,
    });
    return reply
      .code(status)
      .header('cache-control', 'no-store')
      .header('permissions-policy', 'camera=(), microphone=(), geolocation=(), payment=(), usb=()')
      .type('text/html; charset=utf-8')
      .send(page.value);
  }

  function loginPage(reply: FastifyReply, status: number, o: { next?: string; error?: string; notice?: string }) {
    const body = loginBody({ csrfToken: csrfToken(reply), next: safeNext(o.next), error: o.error, notice: o.notice });
    return sendPage(reply, status, 'Sign in', body);
  }

  app.setNotFoundHandler((request, reply) =>
    sendPage(reply, 404, 'Not found', errorBody({ title: 'Not found', message: `Nothing at ${request.url.split('?')[0]}.`, signedIn: signedIn(request) })),
  );

  app.setErrorHandler((err: FastifyError, request, reply) => {
    if (request.url.startsWith('/ui/live')) {
      const status = err instanceof HttpError ? err.statusCode : (err.statusCode ?? 500);
      return reply.code(status).send({ error: { code: 'live_failed', message: err.message } });
    }
    if (err.code === 'FST_CSRF_INVALID_TOKEN' || err.code === 'FST_CSRF_MISSING_SECRET') {
      const message = 'This form had expired (or came from another site). Try again.';
      if (request.url.startsWith('/ui/login')) return loginPage(reply, 403, { error: message });
      return sendPage(reply, 403, 'Form expired', errorBody({ title: 'Form expired', message, signedIn: signedIn(request) }));
    }
    const client = err instanceof HttpError || (err.statusCode !== undefined && err.statusCode < 500);
    if (client) {
      const status = err instanceof HttpError ? err.statusCode : err.statusCode!;
      const message = 'validation' in err && err.validation ? `This address has a bad parameter: ${err.message}` : err.message;
      const title = status === 404 ? 'Not found' : status === 400 ? 'Bad request' : 'Cannot show this';
      return sendPage(reply, status, title, errorBody({ title, message, signedIn: signedIn(request) }));
    }
    const unavailable = isStoreUnavailable(err) || isRedisUnavailable(err);
    if (unavailable) {
      request.log.warn({ err: err.message }, 'status page: a store is unavailable');
      return sendPage(reply.header('retry-after', '5'), 503, 'Unavailable', errorBody({
        title: 'Unavailable',
        message: 'The database or Redis is unavailable right now. This page works again by itself when they are back; reload in a moment.',
        signedIn: false,
      }));
    }
    request.log.error({ err }, 'status page request failed');
    return sendPage(reply, 500, 'Something went wrong', errorBody({ title: 'Something went wrong', message: 'The gateway log says what.', signedIn: false }));
  });

  /** Cross-site form posts are refused even before the CSRF token is looked at (Fetch Metadata). */
  const sameOriginPost = async (request: FastifyRequest) => {
    const site = request.headers['sec-fetch-site'];
    if (site === 'cross-site' || site === 'same-site') {
      throw Object.assign(new Error('cross-site form post'), { code: 'FST_CSRF_INVALID_TOKEN', statusCode: 403 });
    }
  };

  const requireSignIn = async (request: FastifyRequest, reply: FastifyReply) => {
    if (signedIn(request)) return;
    if (request.url.startsWith('/ui/live')) {
      return reply.code(401).send({ error: { code: 'unauthorized', message: 'sign in at /ui/login first' } });
    }
    const expired = request.session?.get('signedInAt') !== undefined;
    return reply.redirect(`/ui/login?next=${encodeURIComponent(safeNext(request.url))}${expired ? '&expired=1' : ''}`, 303);
  };

  // --- assets ------------------------------------------------------------------------------

  app.get('/assets/*', async (request, reply) => {
    const asset = assets.byUrl.get(request.url.split('?')[0]!);
    if (!asset) throw new HttpError(404, 'not_found', 'no such asset');
    return reply
      .header('cache-control', 'public, max-age=31536000, immutable')
      .type(asset.type)
      .send(asset.body);
  });

  // --- sign-in -----------------------------------------------------------------------------

  const signInLimit = app.createRateLimit({
    max: ctx.config.limits.authFailuresPerMinute,
    timeWindow: 60_000,
    keyGenerator: (request) => `ui-signin:${request.ip}`,
  });

  const LoginQuery = z.object({
    next: z.string().max(2048).optional(),
    signed_out: z.string().optional(),
    expired: z.string().optional(),
    refused: z.string().optional(),
  });
  app.get('/login', { schema: { querystring: LoginQuery } }, async (request, reply) => {
    const q = request.query;
    if (signedIn(request)) return reply.redirect(safeNext(q.next), 303);
    const notice = q.signed_out !== undefined ? 'You are signed out.' : q.expired !== undefined ? 'Your session ended; sign in again.' : undefined;
    const error = q.refused !== undefined ? REFUSED : undefined;
    return loginPage(reply, 200, { next: q.next, notice, error });
  });

  app.post(
    '/login',
    {
      preHandler: [sameOriginPost, app.csrfProtection],
      schema: { body: z.object({ token: z.string().max(4096).default(''), _csrf: z.string().max(512).optional(), next: z.string().max(2048).optional() }) },
    },
    async (request, reply) => {
      const { token, next } = request.body;
      const status = await signInLimit(request, { increment: false });
      // At most authFailuresPerMinute failed attempts: once they are used up, not even the right token is looked at.
      if (!status.isAllowed && status.remaining === 0) {
        const seconds = Math.max(1, status.ttlInSeconds);
        void reply.header('retry-after', String(seconds));
        return loginPage(reply, 429, { next, error: `Too many failed sign-ins from your address. Try again in ${seconds} s.` });
      }
      if (!adminToken.has(token)) {
        ctx.metrics.authFailures.inc();
        await signInLimit(request);
        request.log.info({ ip: request.ip }, 'status page: sign-in refused');
        // Post/redirect/get, as GitLab's own sign-in does: reloading the answer does not post the token again.
        return reply.redirect(`/ui/login?refused=1&next=${encodeURIComponent(safeNext(next))}`, 303);
      }
      // A fresh id at sign-in, so that an id planted before it is worth nothing.
      await request.session.regenerate();
      request.session.options({ secure: isHttps(request), maxAge: ttlMs });
      request.session.set('signedInAt', Date.now());
      request.log.info({ ip: request.ip }, 'status page: signed in');
      return reply.redirect(safeNext(next), 303);
    },
  );

  app.post('/logout', { preHandler: [sameOriginPost, app.csrfProtection] }, async (request, reply) => {
    const sessionId = request.session?.sessionId;
    if (sessionId && signedIn(request)) ctx.live.endSession(sessionId);
    if (request.session?.get('signedInAt') !== undefined) await request.session.destroy();
    void reply.clearCookie(SESSION_COOKIE, { path: '/ui' });
    return reply.redirect('/ui/login?signed_out=1', 303);
  });

  registerPages(app, { queries, requireSignIn, sendPage, sessions: store, ttlMs });

  // SSE streams never go idle: end them when the server closes, or it would wait for them.
  app.addHook('preClose', async () => ctx.live.close());
};
