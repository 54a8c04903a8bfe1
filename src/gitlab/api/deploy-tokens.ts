/**
 * Project and group deploy tokens (gitlabhq doc/api/deploy_tokens.md):
 * - `POST /projects/:id/deploy_tokens`, `POST /groups/:id/deploy_tokens` with `name`, `scopes`
 *   (read_repository, read_registry, …), `expires_at` (ISO 8601) and optionally `username`
 *   (default `gitlab+deploy-token-{n}`); the answer carries `id`, `username`, `expires_at` and,
 *   only this once, `token`. Projects need the Maintainer role, groups the Owner role.
 * - `DELETE /projects/:id/deploy_tokens/:token_id`, `DELETE /groups/:id/deploy_tokens/:token_id`
 *   revokes it (204; 404 when it is gone already).
 * `:id` is the URL-encoded full path (gitbeaker's `endpoint` encodes it).
 */
import type { DeployTokenScope } from '@gitbeaker/rest';
import type { GitLabApi } from './client.js';
import { isGitLabApiError } from './errors.js';

export type DeployTokenOwner = { kind: 'project' | 'group'; path: string };

export interface NewDeployToken {
  id: number;
  username: string;
  /** The secret: GitLab shows it only in this answer. */
  token: string;
  expiresAt: string;
}

const ownerOption = (owner: DeployTokenOwner) => (owner.kind === 'project' ? { projectId: owner.path } : { groupId: owner.path });

export async function createDeployToken(
  api: GitLabApi,
  owner: DeployTokenOwner,
  request: { name: string; scopes: DeployTokenScope[]; expiresAt: Date },
): Promise<NewDeployToken> {
  const answer = (await api.deployTokens.create(request.name, request.scopes, {
    ...ownerOption(owner),
    expires_at: request.expiresAt.toISOString(),
  } as Parameters<GitLabApi['deployTokens']['create']>[2])) as unknown as Record<string, unknown>;
  const { id, username, token } = answer;
  if (typeof id !== 'number' || typeof username !== 'string' || typeof token !== 'string' || token === '') {
    throw new Error(`GitLab POST ${owner.kind}s/${owner.path}/deploy_tokens: the answer has no id, username or token`);
  }
  return { id, username, token, expiresAt: typeof answer.expires_at === 'string' ? answer.expires_at : request.expiresAt.toISOString() };
}

/** Revokes the token; true also when GitLab no longer knows it (404: deleted already, or its project/group is gone). */
export async function revokeDeployToken(api: GitLabApi, owner: DeployTokenOwner, tokenId: number): Promise<void> {
  try {
    await api.deployTokens.remove(tokenId, ownerOption(owner) as Parameters<GitLabApi['deployTokens']['remove']>[1]);
  } catch (err) {
    if (isGitLabApiError(err) && err.status === 404) return;
    throw err;
  }
}
