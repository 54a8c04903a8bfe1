/**
 * Cluster objects in Postgres, per agent connection (migration 1764100000000_cluster_state).
 *
 * An agent's objects are the union over its connections: an object reported by two connections
 * is one object (the latest report wins), and the objects of connections that are no longer live
 * stay, marked stale, until a live connection reports them again or completes a full set (a
 * full set taken after they closed is the agent's picture of the cluster; the dead connections'
 * rows go). Liveness is presence (Redis, or in-process), which also covers replicas that died
 * without closing their sockets; without presence, a connection closed on record is not live.
 */
import type pg from 'pg';
import { objectKey, SOURCE_KINDS, sourceKeyOf } from '../deployments/matching.js';
import type { ReportedObject } from '../protocol/kasgate-v1.js';
import { DELETED, type StatusWork } from './status-intake.js';

export interface StoredObject extends ReportedObject {
  /** When the gateway last received this object (ISO 8601). */
  reportedAt: string;
  /** No live connection of the agent reports it: the last word of one that closed. */
  stale: boolean;
}

export interface WriteTarget {
  agentId: string;
  connectionId: string;
  replicaId: string;
  /** Live connection ids of the agent (presence); undefined when presence could not say. Read for full sets only. */
  live: Set<string> | undefined;
  maxObjects: number;
  /**
   * What this connection stored before (its keys), when the writer knows: then the connection
   * row exists, and changes to objects it already has skip the per-agent count. Undefined: unknown.
   */
  stored: ReadonlySet<string> | undefined;
}

export interface WriteResult {
  /** Objects not stored because the agent is at KASGATE_MAX_STATUS_OBJECTS. */
  refused: number;
  /** Objects stored by this write. */
  upserted: ReportedObject[];
  /** Keys of the objects this write removed. */
  deleted: string[];
}

interface KeyRow {
  kind: string;
  namespace: string;
  name: string;
}

/** Rows of connections that are not live: by presence when it answered, else by their recorded close. */
function notLiveClause(live: Set<string> | undefined, param: string): string {
  return live === undefined
    ? `connection_id IN (SELECT connection_id FROM cluster_connections WHERE closed_at IS NOT NULL)`
    : `connection_id <> ALL(${param}::uuid[])`;
}

const keyArrays = (keys: string[]) => {
  const split = keys.map((k) => k.split('/'));
  return [split.map((s) => s[0]!), split.map((s) => s[1]!), split.map((s) => s.slice(2).join('/'))];
};

/**
 * Writes one connection's status work inside the caller's transaction (which holds the agent's
 * lock). A full set replaces the connection's objects and drops the rows of dead connections;
 * changes upsert and delete. Stale copies of an object a live connection reports are left to
 * the next full set: reads prefer the live report.
 */
export async function writeStatus(client: pg.PoolClient, target: WriteTarget, work: StatusWork): Promise<WriteResult> {
  const { agentId, connectionId } = target;
  if (target.stored === undefined) {
    await client.query(
      `INSERT INTO cluster_connections (connection_id, agent_id, replica_id) VALUES ($1, $2, $3) ON CONFLICT (connection_id) DO NOTHING`,
      [connectionId, agentId, target.replicaId],
    );
  }

  const upserts: ReportedObject[] = [];
  const deletions: string[] = [];
  for (const [key, entry] of work.objects) {
    if (entry === DELETED) deletions.push(key);
    else upserts.push(entry);
  }

  if (work.full) {
    // The dead connections' rows: this full set is the picture now.
    const liveIds = target.live ? [...target.live] : [];
    await client.query(
      `DELETE FROM cluster_connections WHERE agent_id = $1 AND connection_id <> $2 AND ${notLiveClause(target.live, '$3')}`,
      target.live ? [agentId, connectionId, liveIds] : [agentId, connectionId],
    );
    const [kinds, namespaces, names] = keyArrays(upserts.map(objectKey));
    await client.query(
      `DELETE FROM cluster_objects o WHERE o.connection_id = $1
         AND NOT EXISTS (SELECT 1 FROM unnest($2::text[], $3::text[], $4::text[]) AS k(kind, namespace, name)
                         WHERE k.kind = o.kind AND k.namespace = o.namespace AND k.name = o.name)`,
      [connectionId, kinds, namespaces, names],
    );
  }
  const deleted: string[] = [];
  if (deletions.length > 0) {
    // This connection's report, and the stale copies of connections that closed: the object is gone.
    const [kinds, namespaces, names] = keyArrays(deletions);
    const { rows } = await client.query<KeyRow>(
      `DELETE FROM cluster_objects o USING unnest($2::text[], $3::text[], $4::text[]) AS k(kind, namespace, name)
       WHERE o.agent_id = $1 AND o.kind = k.kind AND o.namespace = k.namespace AND o.name = k.name
         AND (o.connection_id = $5 OR o.${notLiveClause(undefined, '')})
       RETURNING o.kind, o.namespace, o.name`,
      [agentId, kinds, namespaces, names, connectionId],
    );
    deleted.push(...new Set(rows.map(objectKey)));
  }

  // The per-agent bound counts distinct objects over every connection; changes to objects this
  // connection already stored cannot pass it.
  const stored = target.stored;
  const needsCount = work.full || stored === undefined || upserts.some((o) => !stored.has(objectKey(o)));
  const accepted: ReportedObject[] = [];
  let refused = work.overflow;
  if (needsCount) {
    const { rows: existing } = await client.query<KeyRow>(
      `SELECT DISTINCT kind, namespace, name FROM cluster_objects WHERE agent_id = $1`,
      [agentId],
    );
    const known = new Set(existing.map(objectKey));
    let room = target.maxObjects - known.size;
    for (const object of upserts) {
      if (known.has(objectKey(object))) accepted.push(object);
      else if (room > 0) {
        accepted.push(object);
        room--;
      } else refused++;
    }
  } else {
    accepted.push(...upserts);
  }

  await upsertKnown(client, [{ agentId, connectionId, objects: accepted }]);

  if (work.full || work.agentTruncated !== undefined || refused > 0) {
    await client.query(
      `UPDATE cluster_connections
       SET full_at = CASE WHEN $2 THEN now() ELSE full_at END,
           agent_truncated = COALESCE($3, agent_truncated),
           refused_objects = CASE WHEN $2 THEN $4 ELSE refused_objects + $4 END
       WHERE connection_id = $1`,
      [connectionId, work.full, work.agentTruncated ?? null, refused],
    );
  }
  return { refused, upserted: accepted, deleted };
}

/**
 * Objects as connections reported them, in one statement for many connections; alone, the common
 * case (changes to objects each connection has stored already: no deletion, nothing that could
 * pass the limit). Inside the caller's transaction.
 */
export async function upsertKnown(client: pg.PoolClient, items: { agentId: string; connectionId: string; objects: ReportedObject[] }[]): Promise<void> {
  const rows = items.flatMap(({ agentId, connectionId, objects }) =>
    objects.map((o) => ({
      agent_id: agentId,
      connection_id: connectionId,
      kind: o.kind,
      namespace: o.namespace,
      name: o.name,
      object: o,
      project: SOURCE_KINDS.has(o.kind) && o.project ? o.project.toLowerCase() : null,
      source_key: SOURCE_KINDS.has(o.kind) ? null : (sourceKeyOf(o) ?? null),
    })),
  );
  if (rows.length === 0) return;
  await client.query(
    `INSERT INTO cluster_objects (agent_id, connection_id, kind, namespace, name, object, project, source_key, reported_at)
     SELECT r.agent_id, r.connection_id, r.kind, r.namespace, r.name, r.object, r.project, r.source_key, now()
     FROM jsonb_to_recordset($1::jsonb) AS r(agent_id uuid, connection_id uuid, kind text, namespace text, name text, object jsonb,
                                             project text, source_key text)
     ON CONFLICT (agent_id, kind, namespace, name, connection_id) DO UPDATE
       SET object = excluded.object, project = excluded.project, source_key = excluded.source_key, reported_at = excluded.reported_at`,
    [JSON.stringify(rows)],
  );
}

/** The connection closed: its objects stay, and read as stale. */
export async function markClosed(pool: pg.Pool, connectionId: string): Promise<void> {
  await pool.query('UPDATE cluster_connections SET closed_at = now() WHERE connection_id = $1 AND closed_at IS NULL', [connectionId]);
}

interface ObjectRow {
  object: ReportedObject;
  reported_at: Date;
  connection_id: string;
  closed_at: Date | null;
}

/** An agent's objects as the union over its connections, the live ones first, ordered by kind, namespace and name. */
export async function readObjects(
  pool: pg.Pool,
  agentId: string,
  live: Set<string> | undefined,
): Promise<{ objects: StoredObject[]; truncated: boolean }> {
  const [objects, flags] = await Promise.all([
    pool.query<ObjectRow>(
      `SELECT o.object, o.reported_at, o.connection_id, c.closed_at
       FROM cluster_objects o JOIN cluster_connections c USING (connection_id)
       WHERE o.agent_id = $1`,
      [agentId],
    ),
    pool.query<{ truncated: boolean }>(
      `SELECT COALESCE(bool_or(agent_truncated OR refused_objects > 0), false) AS truncated FROM cluster_connections WHERE agent_id = $1`,
      [agentId],
    ),
  ]);
  const isLive = (row: ObjectRow) => (live ? live.has(row.connection_id) : row.closed_at === null);
  const best = new Map<string, { row: ObjectRow; live: boolean }>();
  for (const row of objects.rows) {
    const key = objectKey(row.object);
    const candidate = { row, live: isLive(row) };
    const current = best.get(key);
    if (
      !current ||
      (candidate.live && !current.live) ||
      (candidate.live === current.live && row.reported_at.getTime() > current.row.reported_at.getTime())
    ) {
      best.set(key, candidate);
    }
  }
  const list = [...best.values()]
    .map(({ row, live: rowLive }) => ({ ...row.object, reportedAt: row.reported_at.toISOString(), stale: !rowLive }))
    .sort((a, b) => a.kind.localeCompare(b.kind) || a.namespace.localeCompare(b.namespace) || a.name.localeCompare(b.name));
  return { objects: list, truncated: flags.rows[0]?.truncated ?? false };
}

/** An (agent, object key) pair. */
export interface AgentKey {
  agentId: string;
  key: string;
}

/**
 * Per agent, the latest report of its objects with one of the `keys`, and of its workloads on
 * one of the sources `sourceKeys` (inside a transaction; any number of agents in one statement).
 */
export async function latestObjects(client: pg.PoolClient, keys: AgentKey[], sourceKeys: AgentKey[]): Promise<Map<string, Map<string, ReportedObject>>> {
  const byAgent = new Map<string, Map<string, ReportedObject>>();
  if (keys.length === 0 && sourceKeys.length === 0) return byAgent;
  const [kinds, namespaces, names] = keyArrays(keys.map((k) => k.key));
  const { rows } = await client.query<{ agent_id: string; object: ReportedObject }>(
    `SELECT DISTINCT ON (x.agent_id, x.kind, x.namespace, x.name) x.agent_id, x.object
     FROM (
       SELECT o.agent_id, o.kind, o.namespace, o.name, o.object, o.reported_at
       FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[]) AS k(agent_id, kind, namespace, name)
       JOIN cluster_objects o ON o.agent_id = k.agent_id AND o.kind = k.kind AND o.namespace = k.namespace AND o.name = k.name
       UNION ALL
       SELECT o.agent_id, o.kind, o.namespace, o.name, o.object, o.reported_at
       FROM unnest($5::uuid[], $6::text[]) AS s(agent_id, source_key)
       JOIN cluster_objects o ON o.agent_id = s.agent_id AND o.source_key = s.source_key
     ) AS x
     ORDER BY x.agent_id, x.kind, x.namespace, x.name, x.reported_at DESC`,
    [keys.map((k) => k.agentId), kinds, namespaces, names, sourceKeys.map((k) => k.agentId), sourceKeys.map((k) => k.key)],
  );
  for (const row of rows) {
    let mine = byAgent.get(row.agent_id);
    if (!mine) byAgent.set(row.agent_id, (mine = new Map()));
    mine.set(objectKey(row.object), row.object);
  }
  return byAgent;
}

/**
 * For a batch of deliveries: the latest report of the agents' sources that could match (the
 * GitRepositories of the given lower-cased projects, every OCIRepository), and of the workloads on them.
 */
export async function candidateObjects(client: pg.PoolClient, agentIds: string[], projects: string[]): Promise<Map<string, ReportedObject[]>> {
  const byAgent = new Map<string, ReportedObject[]>();
  const add = (agentId: string, object: ReportedObject) => {
    let list = byAgent.get(agentId);
    if (!list) byAgent.set(agentId, (list = []));
    list.push(object);
  };
  const { rows: sources } = await client.query<{ agent_id: string; object: ReportedObject }>(
    `SELECT DISTINCT ON (o.agent_id, o.kind, o.namespace, o.name) o.agent_id, o.object
     FROM cluster_objects o
     WHERE o.agent_id = ANY($1::uuid[])
       AND ((o.kind = 'GitRepository' AND o.project = ANY($2::text[])) OR o.kind = 'OCIRepository')
     ORDER BY o.agent_id, o.kind, o.namespace, o.name, o.reported_at DESC`,
    [agentIds, projects],
  );
  if (sources.length === 0) return byAgent;
  for (const row of sources) add(row.agent_id, row.object);
  const { rows: workloads } = await client.query<{ agent_id: string; object: ReportedObject }>(
    `SELECT DISTINCT ON (o.agent_id, o.kind, o.namespace, o.name) o.agent_id, o.object
     FROM cluster_objects o JOIN unnest($1::uuid[], $2::text[]) AS s(agent_id, source_key)
       ON o.agent_id = s.agent_id AND o.source_key = s.source_key
     ORDER BY o.agent_id, o.kind, o.namespace, o.name, o.reported_at DESC`,
    [sources.map((r) => r.agent_id), sources.map((r) => objectKey(r.object))],
  );
  for (const row of workloads) add(row.agent_id, row.object);
  return byAgent;
}
