/**
 * FluxAccessSource over Postgres: the accepted flux_access of each agent's last good config file
 * (agents.flux_access, written by the config-file reader). Listeners run on the replica that
 * changed it (the reader, or the agent's deletion); other replicas learn of access changes
 * through the bus (`agent_changed`).
 */
import type pg from 'pg';
import type { Logger } from 'pino';
import type { AcceptedFluxAccess, FluxAccessListener, FluxAccessSource } from './flux-access.js';
import { isUuid } from '../agent-store.js';
import { underTopLevelGroup } from '../access-rule.js';

export interface FluxAccessStore extends FluxAccessSource {
  /** Tells the listeners (the reader calls it after committing a change; agent deletion too). */
  changed(agentId: string): void;
}

export function createFluxAccessStore(pool: pg.Pool, log: Logger): FluxAccessStore {
  const listeners: FluxAccessListener[] = [];
  return {
    async fluxAccessOf(agentId) {
      if (!isUuid(agentId)) return undefined;
      const { rows } = await pool.query<{ flux_access: AcceptedFluxAccess | null; config_project: string }>(
        'SELECT flux_access, config_project FROM agents WHERE id = $1',
        [agentId],
      );
      const row = rows[0];
      if (!row?.flux_access) return undefined;
      // The config project may have moved since the file was read: never beyond its top-level group now.
      const entries = row.flux_access.entries.filter((entry) => underTopLevelGroup(entry.path, row.config_project));
      return entries.length > 0 ? { rotateSeconds: row.flux_access.rotateSeconds, entries } : undefined;
    },
    async agentsWithFluxAccess() {
      const { rows } = await pool.query<{ id: string }>(
        `SELECT id FROM agents WHERE jsonb_array_length(COALESCE(flux_access -> 'entries', '[]'::jsonb)) > 0 ORDER BY id`,
      );
      return rows.map((row) => row.id);
    },
    onFluxAccessChanged(listener) {
      listeners.push(listener);
    },
    changed(agentId) {
      for (const listener of listeners) {
        try {
          listener(agentId);
        } catch (err) {
          log.warn({ agentId, err: (err as Error).message }, 'flux_access listener failed');
        }
      }
    },
  };
}
