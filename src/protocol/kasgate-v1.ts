/**
 * The kasgate.v1 agent protocol: JSON text frames over a WebSocket.
 * The gateway (src/fanout, src/routes/agent-socket.ts) and the in-cluster agent (src/agent)
 * both import this module and nothing else of each other.
 */
import { z } from 'zod';

export const SUBPROTOCOL = 'kasgate.v1';
export const CONNECT_PATH = '/agent/v1/connect';

export const CloseCode = {
  /** The replica is shutting down: reconnect now, to any replica. */
  ReplicaShutdown: 1012,
  /** The agent did not read its frames fast enough; reconnect and resume. */
  SlowConsumer: 1013,
  /** Repeated protocol violations, or a frame over the size limit. */
  ProtocolViolation: 4400,
  /** Token revoked or agent deleted. Do not reconnect with the same token. */
  Revoked: 4401,
  /** No pong within two heartbeat intervals. */
  HeartbeatMissed: 4408,
  /** Too many connections for this agent. */
  TooManyConnections: 4429,
} as const;
export type CloseCode = (typeof CloseCode)[keyof typeof CloseCode];

const MAX_BIGINT = 2n ** 63n - 1n;

/** Event ids are Postgres bigints, carried as decimal strings. */
export const EventId = z
  .string()
  .regex(/^(0|[1-9]\d{0,18})$/, 'must be a decimal event id')
  .refine((id) => !/^\d{1,19}$/.test(id) || BigInt(id) <= MAX_BIGINT, 'must be at most 9223372036854775807');
export type EventId = z.infer<typeof EventId>;

/** A GitLab project path such as `group/sub/project`. */
export const ProjectPath = z
  .string()
  .min(1)
  .max(1024)
  .regex(/^[^/\s]+(\/[^/\s]+)*$/, 'must be a project path such as group/project');

export const Access = z.enum(['granted', 'unverified']);
export type Access = z.infer<typeof Access>;

// ---- server → agent ----

export const HelloFrame = z.object({
  type: z.literal('hello'),
  agentId: z.string(),
  connectionId: z.string(),
  heartbeatSeconds: z.number().int().positive(),
  config: z.record(z.string(), z.unknown()),
});

export const SubscribedFrame = z.object({
  type: z.literal('subscribed'),
  projects: z.array(z.object({ path: z.string(), access: Access })),
});

export const PushFrame = z.object({
  type: z.literal('push'),
  eventId: EventId,
  project: z.object({
    id: z.number().int(),
    path: z.string(),
    defaultBranch: z.string().nullable(),
  }),
  ref: z.string(),
  before: z.string(),
  after: z.string(),
  receivedAt: z.string(),
});

export const ResyncFrame = z.object({
  type: z.literal('resync'),
  reason: z.enum(['cursor_expired']),
});

export const ErrorFrame = z.object({
  type: z.literal('error'),
  code: z.string(),
  message: z.string(),
});

export const ServerFrame = z.discriminatedUnion('type', [
  HelloFrame,
  SubscribedFrame,
  PushFrame,
  ResyncFrame,
  ErrorFrame,
]);

// ---- agent → server ----

export const SubscribeFrame = z.object({
  type: z.literal('subscribe'),
  projects: z.array(ProjectPath),
  resumeAfter: EventId.optional(),
});

export const AckFrame = z.object({
  type: z.literal('ack'),
  eventId: EventId,
});

export const ClientFrame = z.discriminatedUnion('type', [SubscribeFrame, AckFrame]);

export type HelloFrame = z.infer<typeof HelloFrame>;
export type SubscribedFrame = z.infer<typeof SubscribedFrame>;
export type PushFrame = z.infer<typeof PushFrame>;
export type ResyncFrame = z.infer<typeof ResyncFrame>;
export type ErrorFrame = z.infer<typeof ErrorFrame>;
export type ServerFrame = z.infer<typeof ServerFrame>;
export type SubscribeFrame = z.infer<typeof SubscribeFrame>;
export type AckFrame = z.infer<typeof AckFrame>;
export type ClientFrame = z.infer<typeof ClientFrame>;

/** Error codes carried by `error` frames. */
export const ErrorCode = {
  InvalidJson: 'invalid_json',
  InvalidFrame: 'invalid_frame',
  TooManyProjects: 'too_many_projects',
} as const;

export type ParseResult<T> = { ok: true; frame: T } | { ok: false; code: string; message: string };

function parseWith<T>(schema: z.ZodType<T>, text: string): ParseResult<T> {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return { ok: false, code: ErrorCode.InvalidJson, message: 'frame is not valid JSON' };
  }
  const result = schema.safeParse(json);
  if (result.success) return { ok: true, frame: result.data };
  const issue = result.error.issues[0];
  const where = issue && issue.path.length > 0 ? issue.path.join('.') : 'frame';
  return { ok: false, code: ErrorCode.InvalidFrame, message: `${where}: ${issue?.message ?? 'invalid'}` };
}

export const parseClientFrame = (text: string): ParseResult<ClientFrame> => parseWith(ClientFrame, text);
export const parseServerFrame = (text: string): ParseResult<ServerFrame> => parseWith(ServerFrame, text);
