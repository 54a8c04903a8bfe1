/**
 * Keeps each agent's config file read: at registration, after a push to its config project's
 * default branch, and every `refreshMs` (10 minutes by default). Due agents are claimed in
 * Postgres (`config_next_read_at`, FOR UPDATE SKIP LOCKED, with jitter), so that with many
 * replicas each file is read by one of them; a push only makes the agents of that project due
 * (on the replica that stored the event, after it committed), and the claim does the rest.
 *
 * A good read replaces the file's keys and accepted flux_access; a missing file, bad YAML or an
 * unknown key only sets configError (the last good config stays in force); GitLab's trouble
 * also shows in configError, and the read is tried again sooner. When the effective config
 * changed, every replica sends the agent's live connections a `config` frame; when flux_access
 * changed, every replica re-reads the agent's access (no reconnect needed).
 */
import type pg from 'pg';
import type { Logger } from 'pino';
import type { GitLabApi } from '../../gitlab/api/client.js';
import type { Metrics } from '../../metrics.js';
import type { StoredEvent } from '../../events/event.js';
import type { ControlMessage } from '../../fanout/control.js';
import type { ConfigSource } from '../agent-store.js';
import { normalizePath } from '../access-rule.js';
import type { AcceptedFluxAccess } from './flux-access.js';
import type { FluxAccessStore } from './flux-access-store.js';
import { mergeConfig, parseConfigFile, refusedMessage, stableJson } from './parse.js';
import { readConfigFile, type ReadOutcome } from './reader.js';

export interface ConfigRefresherDeps {
  pool: pg.Pool;
  api: GitLabApi;
  fluxAccess: FluxAccessStore;
  /** Publishes a control message to every replica (sendControl). */
  control(message: ControlMessage): Promise<void>;
  log: Logger;
  metrics: Metrics;
  refreshMs: number;
  /** How long registration waits for the first read before answering without it. */
  registrationWaitMs: number;
}

/** Agents claimed per pass. */
const CLAIM_BATCH = 20;
/** After GitLab's trouble, the next read comes this soon (at most the refresh interval). */
const RETRY_AFTER_TROUBLE_MS = 30_000;

interface Claimed {
  id: string;
  name: string;
  config_project: string;
}


export function startConfigRefresher(deps: ConfigRefresherDeps) {
  const { pool, log, refreshMs } = deps;
  // Its own handle on the client, so that stopping cuts a read GitLab sits on instead of waiting for its timeout.
  const api = deps.api.withPolicy({});
  const refreshSeconds = refreshMs / 1000;
  const tickMs = Math.max(100, Math.min(15_000, refreshMs / 10));
  let stopped = false;
  let running: Promise<void> | undefined;
  let again = false;

  /** Writes what a read found; returns what changed. */
  async function apply(agent: Claimed, outcome: ReadOutcome): Promise<void> {
    const client = await pool.connect();
    let configChanged: Record<string, unknown> | undefined;
    let accessChanged = false;
    try {
      await client.query('BEGIN');
      const { rows } = await client.query<{
        config: Record<string, unknown>;
        config_file: Record<string, unknown> | null;
        flux_access: AcceptedFluxAccess | null;
        config_project: string;
        config_error: string | null;
      }>('SELECT config, config_file, flux_access, config_project, config_error FROM agents WHERE id = $1 FOR UPDATE', [agent.id]);
      const row = rows[0];
      if (!row) {
        await client.query('ROLLBACK');
        return;
      }
      if (normalizePath(row.config_project) !== normalizePath(agent.config_project)) {
        // Moved to another config project meanwhile: that one is read next.
        await client.query('UPDATE agents SET config_next_read_at = now() WHERE id = $1', [agent.id]);
        await client.query('COMMIT');
        return;
      }
      let error: string | null;
      if (outcome.kind === 'read') {
        const parsed = parseConfigFile(outcome.text, row.config_project);
        deps.metrics.configFileReads.inc({ outcome: parsed.ok ? 'ok' : 'invalid' });
        if (parsed.ok) {
          const source: ConfigSource = {
            project: outcome.project,
            path: outcome.path,
            ref: outcome.ref,
            blobId: outcome.blobId,
            commitId: outcome.commitId,
            readAt: new Date().toISOString(),
          };
          error = parsed.file.refused.length > 0 ? refusedMessage(parsed.file.refused, row.config_project) : null;
          const before = mergeConfig(row.config, row.config_file);
          const after = mergeConfig(row.config, parsed.file.config);
          if (stableJson(before) !== stableJson(after)) configChanged = after;
          accessChanged = stableJson(row.flux_access) !== stableJson(parsed.file.fluxAccess);
          await client.query(
            `UPDATE agents SET config_file = $2, flux_access = $3, config_source = $4, config_error = $5, config_read_at = now() WHERE id = $1`,
            [agent.id, parsed.file.config, parsed.file.fluxAccess, source, error],
          );
        } else {
          error = `${outcome.path}@${outcome.ref}: ${parsed.error}`;
          await client.query('UPDATE agents SET config_error = $2 WHERE id = $1', [agent.id, error]);
        }
      } else {
        deps.metrics.configFileReads.inc({ outcome: outcome.kind });
        error = outcome.message;
        await client.query(
          `UPDATE agents SET config_error = $2,
             config_next_read_at = CASE WHEN $3 THEN LEAST(config_next_read_at, now() + make_interval(secs => $4)) ELSE config_next_read_at END
           WHERE id = $1`,
          [agent.id, error, outcome.kind === 'unavailable', Math.min(refreshSeconds, RETRY_AFTER_TROUBLE_MS / 1000) * (1 + Math.random() * 0.2)],
        );
      }
      await client.query('COMMIT');
      if (error !== row.config_error) {
        if (error) log.warn({ agentId: agent.id, agentName: agent.name, configError: error }, 'agent config file: error');
        else log.info({ agentId: agent.id, agentName: agent.name }, 'agent config file read');
      }
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {});
      throw err;
    } finally {
      client.release();
    }
    if (configChanged) await deps.control({ type: 'agent_config', agentId: agent.id, config: configChanged });
    if (accessChanged) {
      await deps.control({ type: 'agent_changed', agentId: agent.id });
      deps.fluxAccess.changed(agent.id);
    }
  }

  async function readOne(agent: Claimed): Promise<void> {
    const outcome = await readConfigFile(api, agent.config_project, agent.name);
    if (stopped) return;
    await apply(agent, outcome);
  }

  async function claim(): Promise<Claimed[]> {
    const { rows } = await pool.query<Claimed>(
      `UPDATE agents a SET config_next_read_at = now() + make_interval(secs => $1 * (1 + random() * 0.1))
       FROM (SELECT id FROM agents WHERE config_next_read_at <= now() ORDER BY config_next_read_at LIMIT $2 FOR UPDATE SKIP LOCKED) due
       WHERE a.id = due.id
       RETURNING a.id, a.name, a.config_project`,
      [refreshSeconds, CLAIM_BATCH],
    );
    return rows;
  }

  async function pass(): Promise<void> {
    for (;;) {
      const due = await claim();
      await Promise.all(
        due.map((agent) =>
          readOne(agent).catch((err: Error) => log.warn({ agentId: agent.id, err: err.message }, 'config file read failed; retrying later')),
        ),
      );
      if (due.length < CLAIM_BATCH || stopped) return;
    }
  }

  /** Runs a pass now (or right after the one running). */
  function nudge(): void {
    if (stopped) return;
    if (running) {
      again = true;
      return;
    }
    running = pass()
      .catch((err: Error) => log.warn({ err: err.message }, 'config file pass failed; retrying at the next tick'))
      .finally(() => {
        running = undefined;
        if (again) {
          again = false;
          nudge();
        }
      });
  }

  // Agents registered before the GitLab API was configured: their first reads spread over a minute.
  void pool
    .query(
      `UPDATE agents SET config_next_read_at = now() + make_interval(secs => random() * $1) WHERE config_next_read_at IS NULL`,
      [Math.min(60, refreshSeconds)],
    )
    .then(() => nudge(), (err: Error) => log.warn({ err: err.message }, 'could not schedule config file reads'));
  const timer = setInterval(nudge, tickMs);
  timer.unref();

  return {
    /** Reads the agent's file now (registration), waiting at most registrationWaitMs. */
    async readNow(agentId: string): Promise<void> {
      const { rows } = await pool.query<Claimed>(
        `UPDATE agents SET config_next_read_at = now() + make_interval(secs => $2 * (1 + random() * 0.1)) WHERE id = $1
         RETURNING id, name, config_project`,
        [agentId, refreshSeconds],
      );
      if (!rows[0]) return;
      const reading = readOne(rows[0]).catch((err: Error) => log.warn({ agentId, err: err.message }, 'config file read failed; retrying later'));
      let wait: NodeJS.Timeout | undefined;
      await Promise.race([reading, new Promise((resolve) => (wait = setTimeout(resolve, deps.registrationWaitMs)))]);
      clearTimeout(wait);
    },

    /** Events this replica stored (after commit): a push to a config project's default branch makes its agents due. */
    pushed(events: readonly StoredEvent[]): void {
      const projects = new Set<string>();
      for (const event of events) {
        if (event.kind !== 'push') continue;
        if (event.defaultBranch !== null && event.ref !== `refs/heads/${event.defaultBranch}`) continue;
        projects.add(normalizePath(event.projectPath));
      }
      if (projects.size === 0 || stopped) return;
      pool
        .query(
          `UPDATE agents SET config_next_read_at = now() WHERE lower(config_project) = ANY($1::text[]) AND config_next_read_at IS NOT NULL`,
          [[...projects]],
        )
        .then(
          (result) => {
            if ((result.rowCount ?? 0) > 0) nudge();
          },
          (err: Error) => log.warn({ err: err.message }, 'could not schedule config file reads after a push; the periodic read catches up'),
        );
    },

    nudge,

    async stop(): Promise<void> {
      stopped = true;
      clearInterval(timer);
      api.close();
      await running;
    },
  };
}

export type ConfigRefresher = ReturnType<typeof startConfigRefresher>;

/**
 * Without the GitLab API the config file is off ("Without them all of this is off", DESIGN.md
 * "GitLab API"): what earlier reads stored (the file's keys, its flux_access grants, its source
 * and error) stops counting, rather than staying in force with nothing to keep it current.
 */
export async function forgetConfigFiles(pool: pg.Pool, log: Logger): Promise<void> {
  const { rows } = await pool.query<{ id: string }>(
    `UPDATE agents
        SET config_file = NULL, flux_access = NULL, config_source = NULL, config_error = NULL,
            config_read_at = NULL, config_next_read_at = NULL
      WHERE config_file IS NOT NULL OR flux_access IS NOT NULL OR config_source IS NOT NULL OR config_error IS NOT NULL
      RETURNING id`,
  );
  if (rows.length > 0) {
    log.warn({ agents: rows.length }, 'KASGATE_GITLAB_URL/KASGATE_GITLAB_TOKEN not set: the agents\' config files, and the flux_access grants they made, no longer count');
  }
}
