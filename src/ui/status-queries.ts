/**
 * The status page's reads: agents and events a page at a time (keyset pagination in both
 * directions, with a case-insensitive substring search), one event, and delivery counts. A page
 * never reads more than `limit + 1` rows, however large the tables are.
 */
import type pg from 'pg';
import { LOGGED_EVENT_COLUMNS, MAX_EVENT_ID, deliveredAgentsOf, toLoggedEvent, type LoggedEvent, type LoggedEventRow } from '../events/event-rows.js';

export interface AgentSummary {
  id: string;
  name: string;
  configProject: string;
  /** When one of its tokens last opened a connection (the token store records it on connect). */
  lastConnectedAt: string | null;
}

export interface Page<T> {
  items: T[];
  /** There are rows before the first item / after the last one (in the page's order). */
  hasPrevious: boolean;
  hasNext: boolean;
}

export type AgentCursor = { after?: string; before?: string };
export type EventCursor = { before?: string; after?: string };

/** Cursors come from URLs: anything out of the bigint range is clamped rather than sent to Postgres. */
const clampId = (id: string) => (BigInt(id) > MAX_EVENT_ID ? MAX_EVENT_ID.toString() : id);

/** Orders a page fetched backwards, and tells whether there was more. */
function pageOf<T>(rows: T[], limit: number, backwards: boolean, hadCursor: boolean): Page<T> {
  const more = rows.length > limit;
  const items = rows.slice(0, limit);
  if (backwards) return { items: items.toReversed(), hasPrevious: more, hasNext: true };
  return { items, hasPrevious: hadCursor, hasNext: more };
}

/** Up to this many matching paths are read one by one through their index. */
const FEW_PATHS = 20;

export function createStatusQueries(pool: pg.Pool) {
  /** Lower-cased project paths containing `search`, at most FEW_PATHS + 1 of them. */
  async function matchingPaths(search: string): Promise<string[]> {
    const { rows } = await pool.query<{ path: string }>(
      `SELECT DISTINCT lower(path) AS path FROM projects WHERE strpos(lower(path), lower($1)) > 0 LIMIT ${FEW_PATHS + 1}`,
      [search],
    );
    return rows.map((r) => r.path);
  }

  return {
    /** Agents by name; `search` matches any part of the name. */
    async agents(search: string | undefined, cursor: AgentCursor, limit: number): Promise<Page<AgentSummary>> {
      const backwards = cursor.before !== undefined && cursor.after === undefined;
      const { rows } = await pool.query<{ id: string; name: string; config_project: string; last_connected_at: Date | null }>(
        `SELECT a.id, a.name, a.config_project,
                (SELECT max(t.last_used_at) FROM agent_tokens t WHERE t.agent_id = a.id) AS last_connected_at
         FROM agents a
         WHERE ($1::text IS NULL OR strpos(lower(a.name), lower($1)) > 0)
           AND ${backwards ? 'a.name < $2' : '($2::text IS NULL OR a.name > $2)'}
         ORDER BY a.name ${backwards ? 'DESC' : 'ASC'}
         LIMIT $3`,
        [search ?? null, (backwards ? cursor.before : cursor.after) ?? null, limit + 1],
      );
      const items = rows.map((r) => ({
        id: r.id,
        name: r.name,
        configProject: r.config_project,
        lastConnectedAt: r.last_connected_at?.toISOString() ?? null,
      }));
      return pageOf(items, limit, backwards, cursor.after !== undefined);
    },

    async countAgents(search: string | undefined): Promise<number> {
      const { rows } = await pool.query<{ n: string }>(
        'SELECT count(*) AS n FROM agents WHERE $1::text IS NULL OR strpos(lower(name), lower($1)) > 0',
        [search ?? null],
      );
      return Number(rows[0]?.n ?? 0);
    },

    /**
     * Events newest first; `search` matches any part of the project path. The paths that match are
     * looked up among the projects first (one row per project): none, and the answer is at once
     * empty; a few, and each is read through the (path, id) index; many, and the matches are
     * dense enough for the newest-first scan to find a page quickly.
     */
    async events(search: string | undefined, cursor: EventCursor, limit: number): Promise<Page<LoggedEvent>> {
      const backwards = cursor.after !== undefined && cursor.before === undefined;
      const bound = backwards ? cursor.after : cursor.before;
      const boundParam = bound === undefined ? null : clampId(bound);
      const order = backwards ? 'ASC' : 'DESC';
      const beyond = backwards ? '>' : '<';
      let rows: LoggedEventRow[];
      const paths = search === undefined ? undefined : await matchingPaths(search);
      if (paths !== undefined && paths.length === 0) {
        rows = [];
      } else if (paths !== undefined && paths.length <= FEW_PATHS) {
        ({ rows } = await pool.query<LoggedEventRow>(
          `SELECT e.* FROM unnest($1::text[]) AS c(path)
           CROSS JOIN LATERAL (
             SELECT ${LOGGED_EVENT_COLUMNS} FROM push_events
             WHERE lower(project_path) = c.path AND ($2::bigint IS NULL OR id ${beyond} $2::bigint)
             ORDER BY id ${order} LIMIT $3
           ) e
           ORDER BY e.id ${order} LIMIT $3`,
          [paths, boundParam, limit + 1],
        ));
      } else {
        ({ rows } = await pool.query<LoggedEventRow>(
          `SELECT ${LOGGED_EVENT_COLUMNS} FROM push_events
           WHERE ($1::text IS NULL OR strpos(lower(project_path), lower($1)) > 0)
             AND ($2::bigint IS NULL OR id ${beyond} $2::bigint)
           ORDER BY id ${order}
           LIMIT $3`,
          [search ?? null, boundParam, limit + 1],
        ));
      }
      return pageOf(rows.map(toLoggedEvent), limit, backwards, cursor.before !== undefined);
    },

    async event(id: string): Promise<LoggedEvent | undefined> {
      if (!/^\d{1,19}$/.test(id) || BigInt(id) > MAX_EVENT_ID) return undefined;
      const { rows } = await pool.query<LoggedEventRow>(`SELECT ${LOGGED_EVENT_COLUMNS} FROM push_events WHERE id = $1`, [id]);
      return rows[0] && toLoggedEvent(rows[0]);
    },

    async deliveredCounts(ids: string[]): Promise<Map<string, number>> {
      if (ids.length === 0) return new Map();
      const { rows } = await pool.query<{ id: string; delivered_count: number }>(
        `SELECT e.id, ${deliveredAgentsOf('e.id')} AS delivered_count FROM unnest($1::bigint[]) AS e(id)`,
        [ids],
      );
      return new Map(rows.map((r) => [r.id, r.delivered_count]));
    },
  };
}

export type StatusQueries = ReturnType<typeof createStatusQueries>;
