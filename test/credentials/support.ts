/** Helpers of the deploy-token tests: an agent's accepted flux_access, as the config-file reader stores it. */
import { randomBytes } from 'node:crypto';
import type { AcceptedFluxAccess, FluxAccessEntry } from '../../src/agents/config-file/flux-access.js';
import type { CredentialsFrame, ServerFrame } from '../../src/protocol/kasgate-v1.js';
import type { TestGateway } from '../support/gateway.js';
import { queryInSchema } from '../support/isolation.js';

export const encryptionKey = () => randomBytes(32).toString('base64');

/**
 * Gives the agent this flux_access the way the config-file reader does: the agents row's
 * flux_access column (read by ctx.fluxAccess), then the change told to its listeners.
 */
export async function setFluxAccess(gw: TestGateway, agentId: string, access: AcceptedFluxAccess | null): Promise<void> {
  await queryInSchema(gw.schema, 'UPDATE agents SET flux_access = $2 WHERE id = $1', [agentId, access === null ? null : JSON.stringify(access)]);
  gw.ctx.fluxAccess.changed(agentId);
}

export const projectEntry = (path: string, secretName: string, extra: Partial<FluxAccessEntry> = {}): FluxAccessEntry => ({
  kind: 'project',
  path,
  role: 'read_repository',
  secretName,
  namespaces: ['apps'],
  ...extra,
});

export const isCredentials = (f: ServerFrame): f is CredentialsFrame => f.type === 'credentials';

export interface CredentialView {
  id: string;
  secretName: string;
  namespaces: string[];
  kind: string;
  role: string;
  project: string | null;
  group: string | null;
  deployTokenId: number;
  registry: string | null;
  state: string;
  createdAt: string;
  sentAt: string | null;
  appliedAt: string | null;
  expiresAt: string;
  rotatesAt: string;
  revokedAt: string | null;
  revokeReason: string | null;
  lastError: string | null;
}

export async function credentialsOf(gw: TestGateway, agentId: string): Promise<{ credentials: CredentialView[]; error: string | null }> {
  const { status, body } = await gw.admin<{ credentials: CredentialView[]; error: string | null }>('GET', `/agents/${agentId}/credentials`);
  if (status !== 200) throw new Error(`GET credentials: ${status} ${JSON.stringify(body)}`);
  return body;
}
