/** GET /agents/{id}/credentials: Flux's deploy tokens of the agent and where each stands (never the secret). */
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { errorResponses, notFound } from '../../http/errors.js';
import type { CredentialRow } from '../../credentials/credential-store.js';
import { AgentIdParams } from './schemas.js';

const security = [{ adminToken: [] }];
const iso = (d: Date | null) => (d ? d.toISOString() : null);

export const FluxCredential = z
  .object({
    id: z.string().meta({ description: 'The id of the credentials frame that carried it' }),
    secretName: z.string(),
    namespaces: z.array(z.string()),
    kind: z.enum(['basic-auth', 'dockerconfigjson']),
    role: z.enum(['read_repository', 'read_registry']).meta({ description: "The deploy token's scope" }),
    project: z.string().nullable().meta({ description: 'The project the deploy token is of (null for a group token)' }),
    group: z.string().nullable().meta({ description: 'The group the deploy token is of (null for a project token)' }),
    deployTokenId: z.number().int().meta({ description: "GitLab's id of the deploy token" }),
    registry: z.string().nullable(),
    state: z.enum(['created', 'sent', 'applied', 'failed', 'revoked']),
    createdAt: z.string(),
    sentAt: z.string().nullable(),
    appliedAt: z.string().nullable(),
    expiresAt: z.string(),
    rotatesAt: z.string().meta({ description: 'From then on a new token is made (two thirds of the lifetime)' }),
    revokedAt: z.string().nullable(),
    revokeReason: z.string().nullable().meta({ description: 'Why it is (to be) revoked: superseded, removed from flux_access, agent deleted…' }),
    lastError: z.string().nullable().meta({ description: "The agent's credentials_failed message, or GitLab's answer to a revocation" }),
  })
  .meta({ id: 'FluxCredential' });

const FluxCredentials = z
  .object({
    credentials: z.array(FluxCredential).meta({ description: 'Newest first, revoked ones included' }),
    error: z.string().nullable().meta({ description: 'What kept kasgate from making or revoking tokens at its last look (GitLab down, no encryption key…)' }),
  })
  .meta({ id: 'FluxCredentials' });

function view(row: CredentialRow): z.infer<typeof FluxCredential> {
  return {
    id: row.id,
    secretName: row.secret_name,
    namespaces: row.namespaces,
    kind: row.kind,
    role: row.role,
    project: row.target_kind === 'project' ? row.target_path : null,
    group: row.target_kind === 'group' ? row.target_path : null,
    deployTokenId: Number(row.gitlab_token_id),
    registry: row.registry,
    state: row.state,
    createdAt: row.created_at.toISOString(),
    sentAt: iso(row.sent_at),
    appliedAt: iso(row.applied_at),
    expiresAt: row.expires_at.toISOString(),
    rotatesAt: row.rotate_at.toISOString(),
    revokedAt: iso(row.revoked_at),
    revokeReason: row.revoke_reason,
    lastError: row.last_error,
  };
}

export const credentialRoutes: FastifyPluginAsyncZod = async (app) => {
  const { ctx } = app;

  app.get(
    '/agents/:id/credentials',
    {
      schema: {
        tags: ['agents'],
        summary: "Flux's deploy tokens made from the agent's flux_access: state, expiry, revocation (never the secret)",
        security,
        params: AgentIdParams,
        response: { 200: FluxCredentials.describe("The agent's deploy tokens for Flux, without their secrets"), ...errorResponses(401, 404) },
      },
    },
    async (request) => {
      if (!(await ctx.agents.get(request.params.id))) throw notFound('agent');
      const { credentials, error } = await ctx.credentials.list(request.params.id);
      return { credentials: credentials.map(view), error };
    },
  );
};
