/**
 * Deployments made: for a delivery, one per workload the agent has reported on a source the
 * event matches (`insert`); for objects new to their connection, one for the latest matching
 * event delivered within the timeout that none covers yet (`ensure`).
 */
import type { ReportedObject } from '../protocol/kasgate-v1.js';
import { canFollow, objectKey, ociRepository, sourceKeyOf, sourceTakes, WORKLOAD_KINDS } from './matching.js';
import type { Round } from './round.js';
import { TRIGGER_COLUMNS, triggerEventOf, type TriggerEvent, type TriggerRow } from './trigger-events.js';

export interface Candidate {
  event: TriggerEvent;
  agentId: string;
  deliveredAt: Date;
  source: ReportedObject;
  workload: ReportedObject;
}


export async function insert(round: Round, candidates: Candidate[]): Promise<void> {
  if (candidates.length === 0) return;
  const rows = candidates.map((c) => ({
    event_id: c.event.eventId,
    agent_id: c.agentId,
    kind: c.workload.kind,
    namespace: c.workload.namespace,
    name: c.workload.name,
    source_key: objectKey(c.source),
    source_type: c.source.kind === 'OCIRepository' ? 'oci' : 'git',
    status_project: c.event.target?.project ?? null,
    commit_sha: c.event.target?.sha ?? null,
    status_ref: c.event.target?.ref ?? null,
    at: c.deliveredAt.toISOString(),
  }));
  const { rows: inserted } = await round.client.query<{ id: string; event_id: string; agent_id: string; kind: string; namespace: string; name: string }>(
    `INSERT INTO deployments (event_id, agent_id, kind, namespace, name, source_key, source_type, status_project, commit_sha,
                              status_ref, state, state_at, created_at, timeline)
     SELECT r.event_id, r.agent_id, r.kind, r.namespace, r.name, r.source_key, r.source_type, r.status_project, r.commit_sha,
            r.status_ref, 'pending', r.at::timestamptz, r.at::timestamptz, jsonb_build_array(jsonb_build_object('state', 'pending', 'at', r.at))
     FROM jsonb_to_recordset($1::jsonb) AS r(event_id bigint, agent_id uuid, kind text, namespace text, name text, source_key text,
                                             source_type text, status_project text, commit_sha text, status_ref text, at text)
     ON CONFLICT (event_id, agent_id, kind, namespace, name) DO NOTHING
     RETURNING id, event_id, agent_id, kind, namespace, name`,
    [JSON.stringify(rows)],
  );
  const byKey = new Map(candidates.map((c) => [`${c.event.eventId}|${c.agentId}|${objectKey(c.workload)}`, c]));
  for (const row of inserted) {
    const c = byKey.get(`${row.event_id}|${row.agent_id}|${row.kind}/${row.namespace}/${row.name}`)!;
    round.outcome.eventIds.add(row.event_id);
    const sourceName = `${c.source.kind} ${c.source.namespace}/${c.source.name}`;
    await round.status(
      { id: row.id, eventId: row.event_id, agentId: row.agent_id, kind: row.kind, namespace: row.namespace, name: row.name },
      c.event.target,
      'running',
      `Delivered to the cluster; waiting for ${sourceName} to fetch it`,
    );
  }
}

/**
 * The project paths whose events a source can take: a GitRepository's project; for an
 * OCIRepository, every prefix of two or more segments of its repository (the project is one of them).
 */
function projectPathsOf(source: ReportedObject): string[] {
  if (source.kind === 'OCIRepository') {
    const segments = (ociRepository(source.url) ?? '').toLowerCase().split('/').filter(Boolean);
    return segments.slice(1).map((_, i) => segments.slice(0, i + 2).join('/'));
  }
  return source.project ? [source.project.toLowerCase()] : [];
}

/**
 * For the agent's workloads in `objects`: a deployment of the latest event delivered within the
 * timeout whose trigger matches the workload's source, when there is none yet.
 */
export async function ensure(round: Round, agentId: string, objects: Map<string, ReportedObject>, fresh: ReadonlySet<string>): Promise<void> {
  const pairs: { source: ReportedObject; workload: ReportedObject }[] = [];
  for (const workload of objects.values()) {
    if (!WORKLOAD_KINDS.has(workload.kind) || !canFollow(workload)) continue;
    const sourceKey = sourceKeyOf(workload) ?? '';
    const source = objects.get(sourceKey);
    if (source && (fresh.has(objectKey(workload)) || fresh.has(sourceKey))) pairs.push({ source, workload });
  }
  const projects = [...new Set(pairs.flatMap((p) => projectPathsOf(p.source)))];
  if (projects.length === 0) return;
  // The latest event per project and what it moves: a ref (pushes, pipelines), or a repository's tag (registry).
  // Deliveries are lists of agents (no index by agent), so the search starts from the projects'
  // events received within the timeout; the first id received after the cutoff bounds the scan.
  const { rows } = await round.client.query<TriggerRow & { delivered_at: Date }>(
    `SELECT DISTINCT ON (lower(e.project_path), e.kind, e.source, COALESCE(e.ref, e.repository || ':' || e.tag)) ${TRIGGER_COLUMNS}, d.delivered_at
     FROM push_events e
       CROSS JOIN LATERAL (SELECT min(x.delivered_at) AS delivered_at FROM event_deliveries x
                           WHERE x.event_id = e.id AND x.delivered_at > $2 AND $1::uuid = ANY(x.agent_ids)) d
     WHERE lower(e.project_path) = ANY($3::text[]) AND e.received_at > $2 AND d.delivered_at IS NOT NULL
       AND e.id >= COALESCE((SELECT id FROM push_events WHERE received_at > $2 ORDER BY received_at LIMIT 1), 0)
     ORDER BY lower(e.project_path), e.kind, e.source, COALESCE(e.ref, e.repository || ':' || e.tag), e.id DESC`,
    [agentId, new Date(Date.now() - round.options.timeoutMs), projects],
  );
  const events = rows
    .map((row) => ({ event: triggerEventOf(row), deliveredAt: row.delivered_at }))
    .filter((e): e is { event: TriggerEvent; deliveredAt: Date } => e.event !== undefined)
    .sort((a, b) => Number(BigInt(b.event.eventId) - BigInt(a.event.eventId)));
  const candidates: Candidate[] = [];
  for (const { source, workload } of pairs) {
    const latest = events.find((e) => sourceTakes(e.event.trigger, source));
    if (latest) candidates.push({ event: latest.event, agentId, deliveredAt: latest.deliveredAt, source, workload });
  }
  await insert(round, candidates);
}

