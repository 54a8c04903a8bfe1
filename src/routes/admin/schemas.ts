/** Shapes of the admin API, shared by its routes (and, through them, the OpenAPI document). */
import { z } from 'zod';
import { ProjectPath } from '../../protocol/kasgate-v1.js';

export const AgentName = z
  .string()
  .regex(/^[a-z0-9]([-a-z0-9._]{0,61}[a-z0-9])?$/, 'must be 1-63 lower-case letters, digits, dots, dashes or underscores');

export const AgentConfig = z
  .record(z.string(), z.unknown())
  .refine((c) => JSON.stringify(c).length <= 65_536, 'must serialize to at most 64 KiB')
  .meta({ description: 'Sent to the agent in its hello frame, e.g. {"flux":{"webhookReceiverUrl":"…"}}' });

export const Agent = z
  .object({
    id: z.string(),
    name: z.string(),
    configProject: z.string(),
    config: z
      .record(z.string(), z.unknown())
      .meta({ description: "The effective config (sent in hello and config frames): the stored one with the config file's keys over it, key by key" }),
    configSource: z
      .object({
        project: z.string(),
        path: z.string(),
        ref: z.string(),
        blobId: z.string(),
        commitId: z.string(),
        readAt: z.string(),
      })
      .nullable()
      .meta({ description: "The last good read of .gitlab/agents/<name>/config.yaml; null when never read (or no GitLab API)" }),
    configError: z
      .string()
      .nullable()
      .meta({ description: 'Why the latest read failed (missing file, bad YAML, unknown key) or which flux_access entries were refused; the last good config stays in force' }),
    createdAt: z.string(),
    updatedAt: z.string(),
  })
  .meta({ id: 'Agent' });

export const TokenInfo = z
  .object({
    id: z.string(),
    prefix: z.string().meta({ description: 'The first characters of the token, to tell tokens apart' }),
    createdAt: z.string(),
    lastUsedAt: z.string().nullable(),
    revokedAt: z.string().nullable(),
  })
  .meta({ id: 'TokenInfo' });

export const IssuedToken = TokenInfo.extend({
  token: z.string().meta({ description: 'The secret, shown this once; kasgate keeps only its hash' }),
}).meta({ id: 'IssuedToken' });

export const Grants = z
  .object({
    projects: z.array(ProjectPath).max(10_000).default([]),
    groups: z.array(ProjectPath).max(10_000).default([]),
  })
  .meta({ id: 'Grants' });

export const Connection = z
  .object({
    connectionId: z.string(),
    agentId: z.string(),
    agentName: z.string(),
    replicaId: z.string(),
    remoteAddress: z.string(),
    connectedAt: z.string(),
    lastHeartbeatAt: z.string(),
    projects: z.array(z.string()),
  })
  .meta({ id: 'Connection' });

export const Connections = z.object({ connections: z.array(Connection) });

export const AgentIdParams = z.object({ id: z.string() });
