/** Agent tokens: issued once, stored only as sha256 hashes with a short visible prefix. */
import { createHash, randomBytes } from 'node:crypto';
import type pg from 'pg';
import type { Logger } from 'pino';
import { mergeConfig } from './config-file/parse.js';
import type { AcceptedFluxAccess } from './config-file/flux-access.js';
import { GRANT_COLUMNS, grantsOf, type GrantColumns, type Grants } from './agent-store.js';

export const TOKEN_PREFIX = 'kgagent_';
const TOKEN_RANDOM_BYTES = 32;
const VISIBLE_CHARS = TOKEN_PREFIX.length + 6;

export interface NewToken {
  /** The secret itself: returned to the admin once, never stored. */
  token: string;
  hash: Buffer;
  prefix: string;
}

export interface TokenInfo {
  id: string;
  prefix: string;
  createdAt: string;
  lastUsedAt: string | null;
  revokedAt: string | null;
}

export interface AuthenticatedToken {
  tokenId: string;
  agentId: string;
  agentName: string;
  configProject: string;
  config: Record<string, unknown>;
  grants: Grants;
  /** Accepted flux_access of the agent's config file (rule 4), or null. */
  fluxAccess: AcceptedFluxAccess | null;
}

export function generateToken(): NewToken {
  const token = TOKEN_PREFIX + randomBytes(TOKEN_RANDOM_BYTES).toString('base64url');
  return { token, hash: hashToken(token), prefix: token.slice(0, VISIBLE_CHARS) };
}

export function hashToken(token: string): Buffer {
  return createHash('sha256').update(token).digest();
}

interface TokenRow {
  id: string;
  token_prefix: string;
  created_at: Date;
  last_used_at: Date | null;
  revoked_at: Date | null;
}

const toInfo = (row: TokenRow): TokenInfo => ({
  id: row.id,
  prefix: row.token_prefix,
  createdAt: row.created_at.toISOString(),
  lastUsedAt: row.last_used_at?.toISOString() ?? null,
  revokedAt: row.revoked_at?.toISOString() ?? null,
});

export function createTokenStore(pool: pg.Pool, log: Logger) {
  let usedSinceFlush = new Set<string>();
  async function flushUsed(): Promise<void> {
    if (usedSinceFlush.size === 0) return;
    const ids = [...usedSinceFlush];
    usedSinceFlush = new Set();
    await pool
      .query('UPDATE agent_tokens SET last_used_at = now() WHERE id = ANY($1::uuid[])', [ids])
      .catch((err: Error) => log.debug({ err: err.message }, 'could not record token use'));
  }
  const usedTimer = setInterval(() => void flushUsed(), 1000);
  usedTimer.unref();

  return {
    /** A new token for an existing agent; undefined when the agent does not exist. */
    async issue(agentId: string): Promise<{ token: string; info: TokenInfo } | undefined> {
      const fresh = generateToken();
      const { rows } = await pool.query<TokenRow>(
        `INSERT INTO agent_tokens (agent_id, token_hash, token_prefix)
         SELECT id, $2, $3 FROM agents WHERE id = $1
         RETURNING id, token_prefix, created_at, last_used_at, revoked_at`,
        [agentId, fresh.hash, fresh.prefix],
      );
      return rows[0] && { token: fresh.token, info: toInfo(rows[0]) };
    },

    async list(agentId: string): Promise<TokenInfo[]> {
      const { rows } = await pool.query<TokenRow>(
        `SELECT id, token_prefix, created_at, last_used_at, revoked_at FROM agent_tokens
         WHERE agent_id = $1 ORDER BY created_at, id`,
        [agentId],
      );
      return rows.map(toInfo);
    },

    /** Revokes a token of the agent; undefined when there is no such token. Idempotent. */
    async revoke(agentId: string, tokenId: string): Promise<TokenInfo | undefined> {
      const { rows } = await pool.query<TokenRow>(
        `UPDATE agent_tokens SET revoked_at = COALESCE(revoked_at, now())
         WHERE agent_id = $1 AND id = $2
         RETURNING id, token_prefix, created_at, last_used_at, revoked_at`,
        [agentId, tokenId],
      );
      return rows[0] && toInfo(rows[0]);
    },

    /** The live agent behind a presented token, with its grants, or undefined for a bad, revoked or orphaned one. */
    async authenticate(token: string): Promise<AuthenticatedToken | undefined> {
      if (!token.startsWith(TOKEN_PREFIX) || token.length > 256) return undefined;
      const { rows } = await pool.query<
        {
          token_id: string;
          agent_id: string;
          name: string;
          config_project: string;
          config: Record<string, unknown>;
          config_file: Record<string, unknown> | null;
          flux_access: AcceptedFluxAccess | null;
        } & GrantColumns
      >(
        `SELECT t.id AS token_id, a.id AS agent_id, a.name, a.config_project, a.config, a.config_file, a.flux_access, ${GRANT_COLUMNS}
         FROM agent_tokens t JOIN agents a ON a.id = t.agent_id
         WHERE t.token_hash = $1 AND t.revoked_at IS NULL`,
        [hashToken(token)],
      );
      const row = rows[0];
      if (!row) return undefined;
      return {
        tokenId: row.token_id,
        agentId: row.agent_id,
        agentName: row.name,
        configProject: row.config_project,
        config: mergeConfig(row.config, row.config_file),
        grants: grantsOf(row),
        fluxAccess: row.flux_access,
      };
    },

    async isActive(tokenId: string): Promise<boolean> {
      const { rowCount } = await pool.query('SELECT 1 FROM agent_tokens WHERE id = $1 AND revoked_at IS NULL', [tokenId]);
      return rowCount === 1;
    },

    /** Which of these tokens are still live (not revoked, agent not deleted). */
    async activeAmong(tokenIds: string[]): Promise<Set<string>> {
      if (tokenIds.length === 0) return new Set();
      const { rows } = await pool.query<{ id: string }>(
        'SELECT id FROM agent_tokens WHERE id = ANY($1::uuid[]) AND revoked_at IS NULL',
        [tokenIds],
      );
      return new Set(rows.map((r) => r.id));
    },

    /** Notes a connection on the token; written with all others once a second (no commit per connect). */
    markUsed(tokenId: string): void {
      usedSinceFlush.add(tokenId);
    },

    async close(): Promise<void> {
      clearInterval(usedTimer);
      await flushUsed();
    },
  };
}

export type TokenStore = ReturnType<typeof createTokenStore>;
