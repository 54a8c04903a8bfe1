/** Data access for agents and their grants. */
import type pg from 'pg';
import type { AcceptedFluxAccess } from './config-file/flux-access.js';
import { mergeConfig } from './config-file/parse.js';

/** Where the agent's config file was last read from (a good read). */
export interface ConfigSource {
  project: string;
  path: string;
  ref: string;
  /** The blob and the commit GitLab answered with. */
  blobId: string;
  commitId: string;
  readAt: string;
}

export interface Agent {
  id: string;
  name: string;
  configProject: string;
  /** The effective config: what the admin API set, with the config file's keys over it. */
  config: Record<string, unknown>;
  /** The last good read of the agent's config file; null when never read (or no GitLab API). */
  configSource: ConfigSource | null;
  /** Why the latest read of the config file failed or refused entries; null when it was fine. */
  configError: string | null;
  createdAt: string;
  updatedAt: string;
}

export interface Grants {
  projects: string[];
  groups: string[];
}

interface AgentRow {
  id: string;
  name: string;
  config_project: string;
  config: Record<string, unknown>;
  config_file: Record<string, unknown> | null;
  config_source: ConfigSource | null;
  config_error: string | null;
  created_at: Date;
  updated_at: Date;
}

const COLUMNS = 'id, name, config_project, config, config_file, config_source, config_error, created_at, updated_at';

function toAgent(row: AgentRow): Agent {
  return {
    id: row.id,
    name: row.name,
    configProject: row.config_project,
    config: mergeConfig(row.config, row.config_file),
    configSource: row.config_source,
    configError: row.config_error,
    createdAt: row.created_at.toISOString(),
    updatedAt: row.updated_at.toISOString(),
  };
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/** Ids come from URLs; a malformed one is simply not found (and never a SQL error). */
export const isUuid = (id: string): boolean => UUID.test(id);

export class DuplicateAgentNameError extends Error {}

/** An agent's grants as two array columns of a query over `agents a` (one round trip with the agent). */
export const GRANT_COLUMNS = `
  ARRAY(SELECT g.path FROM agent_grants g WHERE g.agent_id = a.id AND g.kind = 'project' ORDER BY lower(g.path)) AS grant_projects,
  ARRAY(SELECT g.path FROM agent_grants g WHERE g.agent_id = a.id AND g.kind = 'group' ORDER BY lower(g.path)) AS grant_groups`;

export interface GrantColumns {
  grant_projects: string[];
  grant_groups: string[];
}

export const grantsOf = (row: GrantColumns): Grants => ({ projects: row.grant_projects, groups: row.grant_groups });

export function createAgentStore(pool: pg.Pool) {
  return {
    /** Inserts the agent and its first token hash in one transaction. */
    async create(
      input: { name: string; configProject: string; config: Record<string, unknown> },
      token: { hash: Buffer; prefix: string },
    ): Promise<{ agent: Agent; tokenId: string; tokenCreatedAt: string }> {
      const client = await pool.connect();
      try {
        await client.query('BEGIN');
        const { rows } = await client.query<AgentRow>(
          `INSERT INTO agents (name, config_project, config) VALUES ($1, $2, $3) RETURNING ${COLUMNS}`,
          [input.name, input.configProject, input.config],
        );
        const agent = toAgent(rows[0]!);
        const tok = await client.query<{ id: string; created_at: Date }>(
          'INSERT INTO agent_tokens (agent_id, token_hash, token_prefix) VALUES ($1, $2, $3) RETURNING id, created_at',
          [agent.id, token.hash, token.prefix],
        );
        await client.query('COMMIT');
        return { agent, tokenId: tok.rows[0]!.id, tokenCreatedAt: tok.rows[0]!.created_at.toISOString() };
      } catch (err) {
        await client.query('ROLLBACK').catch(() => {});
        if ((err as { code?: string }).code === '23505') throw new DuplicateAgentNameError(input.name);
        throw err;
      } finally {
        client.release();
      }
    },

    async get(id: string): Promise<Agent | undefined> {
      if (!isUuid(id)) return undefined;
      const { rows } = await pool.query<AgentRow>(`SELECT ${COLUMNS} FROM agents WHERE id = $1`, [id]);
      return rows[0] && toAgent(rows[0]);
    },

    /** Agents ordered by name; `afterName` is the last name of the previous page. */
    async list(limit: number, afterName: string | undefined): Promise<Agent[]> {
      const { rows } = await pool.query<AgentRow>(
        `SELECT ${COLUMNS} FROM agents WHERE $1::text IS NULL OR name > $1 ORDER BY name LIMIT $2`,
        [afterName ?? null, limit],
      );
      return rows.map(toAgent);
    },

    async update(
      id: string,
      patch: { config?: Record<string, unknown>; configProject?: string },
    ): Promise<Agent | undefined> {
      if (!isUuid(id)) return undefined;
      const { rows } = await pool.query<AgentRow>(
        `UPDATE agents SET config = COALESCE($2, config), config_project = COALESCE($3, config_project), updated_at = now()
         WHERE id = $1 RETURNING ${COLUMNS}`,
        [id, patch.config ?? null, patch.configProject ?? null],
      );
      return rows[0] && toAgent(rows[0]);
    },

    async delete(id: string): Promise<boolean> {
      if (!isUuid(id)) return false;
      const { rowCount } = await pool.query('DELETE FROM agents WHERE id = $1', [id]);
      return rowCount === 1;
    },

    async getGrants(agentId: string): Promise<Grants> {
      const { rows } = await pool.query<GrantColumns>(`SELECT ${GRANT_COLUMNS} FROM agents a WHERE a.id = $1`, [agentId]);
      return rows[0] ? grantsOf(rows[0]) : { projects: [], groups: [] };
    },

    /** Replaces the agent's grants; false when the agent does not exist. */
    async setGrants(agentId: string, grants: Grants): Promise<boolean> {
      const client = await pool.connect();
      try {
        await client.query('BEGIN');
        const found = await client.query('SELECT 1 FROM agents WHERE id = $1 FOR UPDATE', [agentId]);
        if (found.rowCount !== 1) {
          await client.query('ROLLBACK');
          return false;
        }
        await client.query('DELETE FROM agent_grants WHERE agent_id = $1', [agentId]);
        const kinds = [...grants.projects.map(() => 'project'), ...grants.groups.map(() => 'group')];
        const paths = [...grants.projects, ...grants.groups];
        await client.query(
          `INSERT INTO agent_grants (agent_id, kind, path)
           SELECT $1, k, p FROM unnest($2::text[], $3::text[]) AS g(k, p) ON CONFLICT DO NOTHING`,
          [agentId, kinds, paths],
        );
        await client.query('COMMIT');
        return true;
      } catch (err) {
        await client.query('ROLLBACK').catch(() => {});
        throw err;
      } finally {
        client.release();
      }
    },

    /** Config projects and grants of the given agents, for building their access. */
    async accessInputs(
      agentIds: string[],
    ): Promise<Map<string, { configProject: string; grants: Grants; fluxAccess: AcceptedFluxAccess | null; config: Record<string, unknown> }>> {
      if (agentIds.length === 0) return new Map();
      const { rows } = await pool.query<
        {
          id: string;
          config_project: string;
          flux_access: AcceptedFluxAccess | null;
          config: Record<string, unknown>;
          config_file: Record<string, unknown> | null;
        } & GrantColumns
      >(
        `SELECT a.id, a.config_project, a.flux_access, a.config, a.config_file, ${GRANT_COLUMNS} FROM agents a WHERE a.id = ANY($1::uuid[])`,
        [agentIds],
      );
      return new Map(
        rows.map((row) => [
          row.id,
          { configProject: row.config_project, grants: grantsOf(row), fluxAccess: row.flux_access, config: mergeConfig(row.config, row.config_file) },
        ]),
      );
    },
  };
}

export type AgentStore = ReturnType<typeof createAgentStore>;
