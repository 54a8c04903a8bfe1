/** Flux's deploy tokens in Postgres (migration 1764310000000): what was made, sent, applied, revoked. */
import type pg from 'pg';
import type { FluxAccessRole } from '../agents/config-file/flux-access.js';

export type CredentialState = 'created' | 'sent' | 'applied' | 'failed' | 'revoked';
export type CredentialKind = 'basic-auth' | 'dockerconfigjson';

export interface CredentialRow {
  id: string;
  agent_id: string;
  target_kind: 'project' | 'group';
  target_path: string;
  role: FluxAccessRole;
  secret_name: string;
  namespaces: string[];
  kind: CredentialKind;
  registry: string | null;
  gitlab_token_id: string;
  username: string;
  state: CredentialState;
  created_at: Date;
  expires_at: Date;
  rotate_at: Date;
  sent_at: Date | null;
  applied_at: Date | null;
  revoke_reason: string | null;
  revoked_at: Date | null;
  last_error: string | null;
  /** Whether a sealed token is still kept (the token itself is read only by `sealedOf`). */
  waiting: boolean;
}

const COLUMNS = `id, agent_id, target_kind, target_path, role, secret_name, namespaces, kind, registry, gitlab_token_id::text,
  username, state, created_at, expires_at, rotate_at, sent_at, applied_at, revoke_reason, revoked_at, last_error,
  sealed_token IS NOT NULL AS waiting`;

export interface NewCredential {
  id: string;
  agentId: string;
  targetKind: 'project' | 'group';
  targetPath: string;
  role: FluxAccessRole;
  secretName: string;
  namespaces: string[];
  kind: CredentialKind;
  registry: string | null;
  gitlabTokenId: number;
  username: string;
  sealedToken: Buffer;
  createdAt: Date;
  expiresAt: Date;
  rotateAt: Date;
  /** When it is sent again if the agent has not answered by then. */
  firstResendAt: Date;
}

export interface WorkRow {
  agent_id: string;
  attempts: number;
  last_error: string | null;
}

const secs = (ms: number) => ms / 1000;

export function createCredentialStore(pool: pg.Pool) {
  return {
    async insert(c: NewCredential): Promise<void> {
      await pool.query(
        `INSERT INTO flux_credentials (id, agent_id, target_kind, target_path, role, secret_name, namespaces, kind, registry,
           gitlab_token_id, username, sealed_token, created_at, expires_at, rotate_at, next_send_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)`,
        [c.id, c.agentId, c.targetKind, c.targetPath, c.role, c.secretName, c.namespaces, c.kind, c.registry, c.gitlabTokenId, c.username,
          c.sealedToken, c.createdAt, c.expiresAt, c.rotateAt, c.firstResendAt],
      );
    },

    /** Every token of the agent, newest first (revoked ones too). */
    async list(agentId: string): Promise<CredentialRow[]> {
      const { rows } = await pool.query<CredentialRow>(
        `SELECT ${COLUMNS} FROM flux_credentials WHERE agent_id = $1 ORDER BY created_at DESC, id`,
        [agentId],
      );
      return rows;
    },

    /** Tokens not revoked yet, newest first. */
    async live(agentId: string): Promise<CredentialRow[]> {
      const { rows } = await pool.query<CredentialRow>(
        `SELECT ${COLUMNS} FROM flux_credentials WHERE agent_id = $1 AND revoked_at IS NULL ORDER BY created_at DESC, id`,
        [agentId],
      );
      return rows;
    },

    /** Tokens still waiting for the agent to apply them, with the sealed secret. */
    async sealedOf(agentId: string): Promise<(CredentialRow & { sealed_token: Buffer })[]> {
      const { rows } = await pool.query<CredentialRow & { sealed_token: Buffer }>(
        `SELECT ${COLUMNS}, sealed_token FROM flux_credentials
         WHERE agent_id = $1 AND sealed_token IS NOT NULL AND revoked_at IS NULL AND state <> 'applied' AND expires_at > now()
         ORDER BY created_at, id`,
        [agentId],
      );
      return rows;
    },

    async markSent(ids: string[]): Promise<void> {
      if (ids.length === 0) return;
      await pool.query(
        `UPDATE flux_credentials SET sent_at = now(), state = CASE WHEN state = 'created' THEN 'sent' ELSE state END
         WHERE id = ANY($1::uuid[]) AND revoked_at IS NULL`,
        [ids],
      );
    },

    /** The agent wrote the Secret everywhere: the sealed token goes. False for an id that is not this agent's (or revoked). */
    async markApplied(agentId: string, id: string): Promise<boolean> {
      const { rowCount } = await pool.query(
        `UPDATE flux_credentials SET state = 'applied', applied_at = COALESCE(applied_at, now()), sealed_token = NULL, last_error = NULL
         WHERE id = $1 AND agent_id = $2 AND revoked_at IS NULL`,
        [id, agentId],
      );
      return rowCount === 1;
    },

    /** The agent could not write it: kept, shown, and sent again after `retryMs`. */
    async markFailed(agentId: string, id: string, message: string, retryMs: (attempts: number) => number): Promise<boolean> {
      const { rows } = await pool.query<{ send_attempts: number }>(
        `UPDATE flux_credentials SET state = CASE WHEN state = 'applied' THEN state ELSE 'failed' END, last_error = $3
         WHERE id = $1 AND agent_id = $2 AND revoked_at IS NULL RETURNING send_attempts`,
        [id, agentId, message],
      );
      if (!rows[0]) return false;
      await pool.query(`UPDATE flux_credentials SET next_send_at = now() + make_interval(secs => $2) WHERE id = $1`, [
        id,
        secs(retryMs(rows[0].send_attempts + 1)),
      ]);
      return true;
    },

    async markForRevocation(ids: string[], reason: string): Promise<void> {
      if (ids.length === 0) return;
      await pool.query(`UPDATE flux_credentials SET revoke_reason = $2 WHERE id = ANY($1::uuid[]) AND revoke_reason IS NULL`, [ids, reason]);
    },

    async markRevoked(id: string): Promise<void> {
      await pool.query(
        `UPDATE flux_credentials SET revoked_at = now(), state = 'revoked', sealed_token = NULL, last_error = NULL WHERE id = $1`,
        [id],
      );
    },

    async setError(id: string, message: string): Promise<void> {
      await pool.query('UPDATE flux_credentials SET last_error = $2 WHERE id = $1', [id, message]);
    },

    /** A sealed token that no longer opens: dropped, and the token revoked (a new one is made in its place). */
    async dropUnreadable(id: string): Promise<void> {
      await pool.query(
        `UPDATE flux_credentials SET sealed_token = NULL, revoke_reason = COALESCE(revoke_reason, 'unreadable'),
           last_error = 'the stored token does not open under KASGATE_ENCRYPTION_KEY (was the key changed?); a new one is made'
         WHERE id = $1`,
        [id],
      );
    },

    /**
     * Agents owed a (re)send: tokens waiting whose resend time came. Claimed once across replicas;
     * the next resend is pushed back by `retryMs(attempts)`.
     */
    async claimResends(retryMs: (attempts: number) => number, limit = 100): Promise<string[]> {
      const { rows } = await pool.query<{ id: string; agent_id: string; send_attempts: number }>(
        `WITH due AS (
           SELECT id FROM flux_credentials
           WHERE sealed_token IS NOT NULL AND revoked_at IS NULL AND state <> 'applied' AND next_send_at <= now() AND expires_at > now()
           ORDER BY next_send_at LIMIT $1 FOR UPDATE SKIP LOCKED)
         UPDATE flux_credentials c SET send_attempts = c.send_attempts + 1, next_send_at = now() + interval '1 hour'
         FROM due WHERE c.id = due.id RETURNING c.id, c.agent_id, c.send_attempts`,
        [limit],
      );
      for (const row of rows) {
        await pool.query('UPDATE flux_credentials SET next_send_at = now() + make_interval(secs => $2) WHERE id = $1', [
          row.id,
          secs(retryMs(row.send_attempts)),
        ]);
      }
      return [...new Set(rows.map((r) => r.agent_id))];
    },

    // ---- per-agent work ----

    async schedule(agentId: string, delayMs = 0): Promise<void> {
      await pool.query(
        `INSERT INTO flux_credential_work (agent_id, next_run_at) VALUES ($1, now() + make_interval(secs => $2))
         ON CONFLICT (agent_id) DO UPDATE
         SET next_run_at = LEAST(flux_credential_work.next_run_at, EXCLUDED.next_run_at), wanted_at = clock_timestamp()`,
        [agentId, secs(delayMs)],
      );
    },

    /** Agents in the table that have no work row (e.g. started before it was written): scheduled now. */
    async scheduleMissing(agentIds: string[]): Promise<void> {
      await pool.query(
        `INSERT INTO flux_credential_work (agent_id)
         SELECT a FROM unnest($1::uuid[]) AS a
         UNION SELECT DISTINCT agent_id FROM flux_credentials WHERE revoked_at IS NULL
         ON CONFLICT (agent_id) DO NOTHING`,
        [agentIds],
      );
    },

    async claimWork(replicaId: string, leaseMs: number, limit: number): Promise<WorkRow[]> {
      const { rows } = await pool.query<WorkRow>(
        `WITH due AS (
           SELECT agent_id FROM flux_credential_work
           WHERE next_run_at <= now() AND (leased_until IS NULL OR leased_until < now())
           ORDER BY next_run_at LIMIT $1 FOR UPDATE SKIP LOCKED)
         UPDATE flux_credential_work w SET leased_until = now() + make_interval(secs => $2), leased_by = $3, attempts = w.attempts + 1,
             claimed_at = clock_timestamp()
         FROM due WHERE w.agent_id = due.agent_id
         RETURNING w.agent_id, w.attempts, w.last_error`,
        [limit, secs(leaseMs), replicaId],
      );
      return rows;
    },

    /** Done for now: look again after `nextInMs` (an error, if any, stays shown until a clean run). */
    async finishWork(agentId: string, replicaId: string, outcome: { nextInMs: number; error: string | null; failed: boolean }): Promise<void> {
      await pool.query(
        `UPDATE flux_credential_work
         SET leased_until = NULL, updated_at = now(), last_error = $3,
             attempts = CASE WHEN $5 THEN attempts ELSE 0 END,
             -- asked for again while this run went on (the agent answered): look again at once
             next_run_at = CASE WHEN wanted_at > claimed_at THEN now() ELSE now() + make_interval(secs => $4) END
         WHERE agent_id = $1 AND leased_by = $2`,
        [agentId, replicaId, outcome.error, secs(outcome.nextInMs), outcome.failed],
      );
    },

    /** Keeps the claim while a look takes long (several GitLab calls). */
    async extendLease(agentId: string, replicaId: string, leaseMs: number): Promise<void> {
      await pool.query(
        'UPDATE flux_credential_work SET leased_until = now() + make_interval(secs => $3) WHERE agent_id = $1 AND leased_by = $2',
        [agentId, replicaId, secs(leaseMs)],
      );
    },

    /** A deleted agent whose tokens are all revoked: nothing of it is kept. */
    async forget(agentId: string, replicaId: string): Promise<void> {
      await pool.query('DELETE FROM flux_credential_work WHERE agent_id = $1 AND leased_by = $2', [agentId, replicaId]);
      await pool.query('DELETE FROM flux_credentials WHERE agent_id = $1 AND revoked_at IS NOT NULL', [agentId]);
    },

    async workError(agentId: string): Promise<string | null> {
      const { rows } = await pool.query<{ last_error: string | null }>('SELECT last_error FROM flux_credential_work WHERE agent_id = $1', [agentId]);
      return rows[0]?.last_error ?? null;
    },

    async releaseLeases(replicaId: string): Promise<void> {
      await pool.query('UPDATE flux_credential_work SET leased_until = NULL WHERE leased_by = $1', [replicaId]);
    },
  };
}

export type CredentialStore = ReturnType<typeof createCredentialStore>;
