/**
 * The kasgate.v1 agent protocol: JSON text frames over a WebSocket.
 * The gateway (src/fanout, src/routes/agent-socket.ts and agent-connection.ts) and the in-cluster agent (src/agent)
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

/** A Kubernetes object name or namespace (RFC 1123 subdomain, at most 253 characters). */
export const KubeName = z
  .string()
  .min(1)
  .max(253)
  .regex(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/, 'must be a Kubernetes object name');

const ProjectInFrame = z.object({
  id: z.number().int(),
  path: z.string(),
  defaultBranch: z.string().nullable(),
});

// ---- server → agent ----

export const HelloFrame = z.object({
  type: z.literal('hello'),
  agentId: z.string(),
  connectionId: z.string(),
  heartbeatSeconds: z.number().int().positive(),
  config: z.record(z.string(), z.unknown()),
  /** Optional for older gateways; an agent assumes 65536 bytes and 5000 objects without it. */
  limits: z
    .object({
      maxFrameBytes: z.number().int().positive(),
      /** *(kasgate)* KASGATE_MAX_STATUS_OBJECTS: the agent reports at most this many objects, then says `truncated`. */
      maxStatusObjects: z.number().int().positive().optional(),
    })
    .optional(),
});

/** The agent's configuration changed (admin API or its config file): applies to every live connection. */
export const ConfigFrame = z.object({
  type: z.literal('config'),
  config: z.record(z.string(), z.unknown()),
});

export const SubscribedFrame = z.object({
  type: z.literal('subscribed'),
  projects: z.array(z.object({ path: z.string(), access: Access })),
});

export const PushFrame = z.object({
  type: z.literal('push'),
  eventId: EventId,
  project: ProjectInFrame,
  ref: z.string(),
  /** null when GitLab did not say (some group-hook deliveries omit it): unknown, not "branch created". */
  before: z.string().nullable(),
  after: z.string(),
  receivedAt: z.string(),
});

/** A pipeline that succeeded (it may have run `flux push artifact`): reconcile every OCIRepository under the project. */
export const PipelineArtifactFrame = z.object({
  type: z.literal('artifact'),
  eventId: EventId,
  source: z.literal('pipeline'),
  project: ProjectInFrame,
  ref: z.string(),
  sha: z.string(),
  pipelineId: z.number().int(),
  receivedAt: z.string(),
});

/** A tag pushed to the container registry: reconcile the OCIRepositories of that repository the tag can change. */
export const RegistryArtifactFrame = z.object({
  type: z.literal('artifact'),
  eventId: EventId,
  source: z.literal('registry'),
  project: ProjectInFrame,
  repository: z.string(),
  tag: z.string(),
  digest: z.string().nullable(),
  receivedAt: z.string(),
});

export const ArtifactFrame = z.discriminatedUnion('source', [PipelineArtifactFrame, RegistryArtifactFrame]);

/** A deploy token for Flux: the agent writes it as a Secret in each namespace and answers credentials_applied. */
export const CredentialsFrame = z.object({
  type: z.literal('credentials'),
  id: z.string().min(1).max(128),
  secretName: KubeName,
  namespaces: z.array(KubeName).min(1),
  kind: z.enum(['basic-auth', 'dockerconfigjson']),
  username: z.string(),
  password: z.string(),
  /** The registry host, for dockerconfigjson; null for basic-auth. */
  registry: z.string().nullable(),
  expiresAt: z.string(),
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
  ConfigFrame,
  SubscribedFrame,
  PushFrame,
  ArtifactFrame,
  ResyncFrame,
  CredentialsFrame,
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

export const FluxKind = z.enum(['GitRepository', 'OCIRepository', 'Kustomization', 'HelmRelease']);
export type FluxKind = z.infer<typeof FluxKind>;

const optionalText = (max: number) => z.string().max(max).nullable().default(null);

export const ObjectRef = z.object({ kind: z.string().min(1).max(64), namespace: KubeName, name: KubeName });

/** One Flux object as the agent sees it (DESIGN.md "Cluster state"). Absent optional fields read as null. */
export const ReportedObject = z.object({
  kind: FluxKind,
  namespace: KubeName,
  name: KubeName,
  ready: z.enum(['True', 'False', 'Unknown']),
  reason: optionalText(256),
  message: optionalText(4096),
  /** Sources: status.artifact.revision; Kustomizations: status.lastAppliedRevision. */
  revision: optionalText(1024),
  /** Sources: the artifact's org.opencontainers.image.revision metadata. */
  originRevision: optionalText(1024),
  /** *(kasgate)* OCI sources: the artifact's org.opencontainers.image.source metadata (the Git URL it was built from). */
  originSource: optionalText(2048),
  /** Kustomizations and HelmReleases: the last attempted revision. */
  attemptedRevision: optionalText(1024),
  sourceRef: ObjectRef.nullable().default(null),
  /** Sources: spec.url. */
  url: optionalText(2048),
  /** Sources: the GitLab project path the agent matched it to. */
  project: optionalText(1024),
  /** Sources: spec.ref as Flux has it. */
  ref: z.record(z.string(), z.string().max(1024)).nullable().default(null),
  suspended: z.boolean().default(false),
  /** The Ready condition's last transition (ISO 8601). */
  updatedAt: optionalText(64),
});

export const DeletedObject = z.object({ kind: FluxKind, namespace: KubeName, name: KubeName, deleted: z.literal(true) });

export const StatusFrame = z
  .object({
    type: z.literal('status'),
    /** A full set replaces what this connection reported before; otherwise these are changes. */
    full: z.boolean(),
    objects: z.array(z.union([DeletedObject, ReportedObject])),
    /** A full set split over several frames: part i of n, counting from 1. */
    part: z.number().int().min(1).optional(),
    parts: z.number().int().min(1).optional(),
    /** The agent has more objects than KASGATE_MAX_STATUS_OBJECTS and reported only that many. */
    truncated: z.boolean().optional(),
  })
  .refine((f) => (f.part === undefined) === (f.parts === undefined), 'part and parts come together')
  .refine((f) => f.part === undefined || (f.full && f.part <= f.parts!), 'part must be at most parts, on a full set');

export const CredentialsAppliedFrame = z.object({
  type: z.literal('credentials_applied'),
  id: z.string().min(1).max(128),
});

/** *(kasgate)* The agent could not write the Secret (e.g. no rights in a namespace); the gateway shows it and sends it again later. */
export const CredentialsFailedFrame = z.object({
  type: z.literal('credentials_failed'),
  id: z.string().min(1).max(128),
  message: z.string().max(1024),
});

export const ClientFrame = z.discriminatedUnion('type', [
  SubscribeFrame,
  AckFrame,
  StatusFrame,
  CredentialsAppliedFrame,
  CredentialsFailedFrame,
]);

export type HelloFrame = z.infer<typeof HelloFrame>;
export type ConfigFrame = z.infer<typeof ConfigFrame>;
export type ArtifactFrame = z.infer<typeof ArtifactFrame>;
export type PipelineArtifactFrame = z.infer<typeof PipelineArtifactFrame>;
export type RegistryArtifactFrame = z.infer<typeof RegistryArtifactFrame>;
export type CredentialsFrame = z.infer<typeof CredentialsFrame>;
export type ReportedObject = z.infer<typeof ReportedObject>;
export type DeletedObject = z.infer<typeof DeletedObject>;
export type StatusFrame = z.infer<typeof StatusFrame>;
/** What the agent builds and sends (defaults may be left out). */
export type StatusFrameInput = z.input<typeof StatusFrame>;
export type CredentialsAppliedFrame = z.infer<typeof CredentialsAppliedFrame>;
export type CredentialsFailedFrame = z.infer<typeof CredentialsFailedFrame>;
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
  /** A status part that does not continue the full set being assembled: send the set again from part 1. */
  StatusPartOutOfOrder: 'status_part_out_of_order',
  /** Objects over KASGATE_MAX_STATUS_OBJECTS for the agent were not stored (the socket stays open). */
  TooManyObjects: 'too_many_objects',
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
