/** Projects as last seen in a push or pipeline: path, visibility, default branch. Written by the event log's append. */
import type pg from 'pg';

export interface Project {
  id: number;
  path: string;
  visibility: number | null;
  defaultBranch: string | null;
  lastEventId: string | null;
  updatedAt: string;
}

interface ProjectRow {
  id: string;
  path: string;
  visibility: number | null;
  default_branch: string | null;
  last_event_id: string | null;
  updated_at: Date;
}

const toProject = (row: ProjectRow): Project => ({
  id: Number(row.id),
  path: row.path,
  visibility: row.visibility,
  defaultBranch: row.default_branch,
  lastEventId: row.last_event_id,
  updatedAt: row.updated_at.toISOString(),
});

export function createProjectStore(pool: pg.Pool) {
  /**
   * The projects last seen at any of these (lower-cased) paths: for each path the one seen most
   * recently (a path freed by a rename or transfer may have had another project before).
   */
  async function findByPaths(paths: string[]): Promise<Project[]> {
    if (paths.length === 0) return [];
    const { rows } = await pool.query<ProjectRow>(
      `SELECT DISTINCT ON (lower(path)) id, path, visibility, default_branch, last_event_id, updated_at FROM projects
       WHERE lower(path) = ANY($1::text[]) ORDER BY lower(path), updated_at DESC`,
      [paths],
    );
    return rows.map(toProject);
  }

  return {
    /** By numeric id, or by path in any case. */
    async find(idOrPath: string): Promise<Project | undefined> {
      const byId = /^\d{1,18}$/.test(idOrPath);
      const { rows } = await pool.query<ProjectRow>(
        `SELECT id, path, visibility, default_branch, last_event_id, updated_at FROM projects
         WHERE ${byId ? 'id = $1::bigint' : 'lower(path) = lower($1)'} ORDER BY updated_at DESC LIMIT 1`,
        [idOrPath],
      );
      const row = rows[0];
      return row && toProject(row);
    },

    findByPaths,

    /** Last known visibility of each (lower-cased) path that has been seen. */
    async visibilities(paths: string[]): Promise<Map<string, number | null>> {
      return new Map((await findByPaths(paths)).map((p) => [p.path.toLowerCase(), p.visibility]));
    },
  };
}

export type ProjectStore = ReturnType<typeof createProjectStore>;
