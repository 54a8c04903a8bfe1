/** The one error body of every HTTP answer, `{"error":{"code","message"}}`, and the handler that writes it. */
import type { FastifyError, FastifyInstance } from 'fastify';
import { hasZodFastifySchemaValidationErrors, isResponseSerializationError } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { isStoreUnavailable } from '../db/pool.js';

export const ErrorBody = z
  .object({ error: z.object({ code: z.string(), message: z.string() }) })
  .meta({ id: 'Error', description: 'Every error answer has this shape' });

export type ErrorBody = z.infer<typeof ErrorBody>;

export class HttpError extends Error {
  constructor(
    readonly statusCode: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export const errorBody = (code: string, message: string): ErrorBody => ({ error: { code, message } });

export const notFound = (what: string) => new HttpError(404, 'not_found', `${what} not found`);

/**
 * What each error status means, as the OpenAPI document says it. @fastify/swagger takes a response's
 * description from its schema's description: success responses `.describe()` their schema in the
 * route; error responses get theirs here (a route may say it in its own words: `[401, '…']`).
 */
export const ERROR_DESCRIPTIONS: Record<number, string> = {
  400: 'The request is not valid: the message names the field at fault',
  401: 'No valid token: the message says which one is expected',
  404: 'Not found: the message says what',
  409: 'Conflicts with what exists: the message says what',
  413: 'The body is larger than the limit the message names',
  415: 'The Content-Type is not one this route takes',
  429: 'Too many attempts from this address; retry after the time the message names',
  500: 'Internal error; the gateway log has the cause',
  503: 'A dependency (the message names it) is unavailable, or this replica is draining; retry after Retry-After',
};

/** Response schemas for the error statuses a route can answer with, each with its description. */
export function errorResponses<S extends number>(...statuses: (S | readonly [S, string])[]): Record<S, typeof ErrorBody> {
  return Object.fromEntries(
    statuses.map((entry) => {
      const [status, description] = typeof entry === 'number' ? [entry, ERROR_DESCRIPTIONS[entry]] : entry;
      if (description === undefined) throw new Error(`errorResponses: no description for status ${status}; pass [${status}, '…']`);
      return [status, ErrorBody.describe(description)];
    }),
  ) as Record<S, typeof ErrorBody>;
}

/** Fastify's own client errors, by code, in the contract's words. */
const FASTIFY_CLIENT_ERRORS: Record<string, { status: number; code: string; message: string }> = {
  FST_ERR_CTP_EMPTY_JSON_BODY: { status: 400, code: 'invalid_json', message: 'body: empty, expected JSON' },
  FST_ERR_CTP_INVALID_MEDIA_TYPE: { status: 415, code: 'unsupported_media_type', message: 'body: unsupported content type' },
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: { status: 400, code: 'invalid_content_length', message: 'Content-Length does not match the body' },
};

/** ioredis' ways of saying Redis is away (with the offline queue off, commands fail fast). */
export function isRedisUnavailable(err: Error): boolean {
  return (
    err.name === 'MaxRetriesPerRequestError' ||
    /Stream isn't writeable|Connection is closed|Command timed out|Reached the max retries/.test(err.message)
  );
}

/** 1048576 → "1 MiB", 1536 → "1.5 KiB", 1000 → "1000 bytes". */
export function humanBytes(bytes: number): string {
  for (const [unit, size] of [
    ['GiB', 1024 ** 3],
    ['MiB', 1024 ** 2],
    ['KiB', 1024],
  ] as const) {
    if (bytes >= size) return `${Number((bytes / size).toFixed(bytes % size === 0 ? 0 : 1))} ${unit}`;
  }
  return `${bytes} bytes`;
}

/** The 413 message: the limit in bytes and in human form. */
export const bodyTooLargeMessage = (limit: number): string => `body: larger than the ${limit}-byte (${humanBytes(limit)}) limit`;

export function installErrorHandling(app: FastifyInstance): void {
  app.setNotFoundHandler((request, reply) => {
    void reply.code(404).send(errorBody('not_found', `no route for ${request.method} ${request.url.split('?')[0]}`));
  });

  app.setErrorHandler((err: FastifyError, request, reply) => {
    if (err instanceof HttpError) {
      return reply.code(err.statusCode).send(errorBody(err.code, err.message));
    }
    if (hasZodFastifySchemaValidationErrors(err)) {
      const where = err.validationContext ?? 'request';
      const message = err.validation
        .map((v) => {
          const field = v.instancePath.replace(/^\//, '').replaceAll('/', '.');
          return `${where}${field ? `.${field}` : ''}: ${v.message}`;
        })
        .join('; ');
      return reply.code(400).send(errorBody('invalid_request', message));
    }
    if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
      const limit = request.routeOptions.bodyLimit ?? app.initialConfig.bodyLimit ?? 1_048_576;
      return reply.code(413).send(errorBody('body_too_large', bodyTooLargeMessage(limit)));
    }
    const known = err.code ? FASTIFY_CLIENT_ERRORS[err.code] : undefined;
    if (known) return reply.code(known.status).send(errorBody(known.code, known.message));
    if (err instanceof SyntaxError || err.statusCode === 400) {
      return reply.code(400).send(errorBody('invalid_json', `body: ${err.message}`));
    }
    if (err.statusCode !== undefined && err.statusCode >= 400 && err.statusCode < 500) {
      return reply.code(err.statusCode).send(errorBody('bad_request', err.message));
    }
    if (isRedisUnavailable(err)) {
      request.log.warn({ err: err.message }, 'redis unavailable');
      return reply.code(503).header('retry-after', '5').send(errorBody('presence_unavailable', 'presence (Redis) is unavailable; retry later'));
    }
    if (isStoreUnavailable(err)) {
      request.log.warn({ err: err.message }, 'postgres unavailable');
      return reply.code(503).header('retry-after', '5').send(errorBody('store_unavailable', 'the database is unavailable; retry later'));
    }
    if (isResponseSerializationError(err)) request.log.error({ err }, 'response did not match its schema');
    else request.log.error({ err }, 'request failed');
    return reply.code(500).send(errorBody('internal_error', 'internal error; see the gateway log'));
  });
}
