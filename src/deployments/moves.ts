/**
 * Deployments moved: on every status write of the agent, its open deployments of the changed
 * workloads and sources go as far as the objects say (matching.ts `advance`), a later event that
 * got to a workload first supersedes the earlier ones, and each step owes its commit status.
 */
import type pg from 'pg';
import { latestObjects, type AgentKey } from '../cluster/object-store.js';
import type { ReportedObject } from '../protocol/kasgate-v1.js';
import { ociCommitOf, type CommitTarget } from './commit-target.js';
import { objectKey, sourceKeyOf, WORKLOAD_KINDS } from './matching.js';
import { advance, FINAL_STATES, type DeploymentState, type Step } from './progress.js';
import { ensure } from './new-deployments.js';
import type { Round } from './round.js';
import { TRIGGER_COLUMNS, triggerEventOf, type TriggerRow } from './trigger-events.js';

export interface DeploymentRow extends TriggerRow {
  id: string;
  agent_id: string;
  dkind: string;
  namespace: string;
  name: string;
  source_key: string;
  source_type: 'git' | 'oci';
  status_project: string | null;
  commit_sha: string | null;
  status_ref: string | null;
  state: DeploymentState;
  fetched_revision: string | null;
}

export const DEPLOYMENT_COLUMNS = `d.id, d.agent_id, d.kind AS dkind, d.namespace, d.name, d.source_key, d.source_type, d.status_project,
  d.commit_sha, d.status_ref, d.state, d.fetched_revision, ${TRIGGER_COLUMNS}`;

const rowKey = (row: DeploymentRow) => `${row.dkind}/${row.namespace}/${row.name}`;

export interface EvalItem {
  agentId: string;
  /** Changed workloads. */
  keys: string[];
  /** Changed sources. */
  sourceKeys: string[];
  /** Objects new to their connection or re-pointed: look for deployments they miss. */
  fresh: ReadonlySet<string>;
}

/**
 * Per agent, the objects a set of changed keys concerns: them, the workloads on changed
 * sources, and the sources of changed workloads. Two statements for any number of agents.
 */
async function objectsAround(client: pg.PoolClient, items: EvalItem[]): Promise<Map<string, Map<string, ReportedObject>>> {
  const keys = items.flatMap((i) => [...i.keys, ...i.sourceKeys].map((key) => ({ agentId: i.agentId, key })));
  const onSources = items.flatMap((i) => i.sourceKeys.map((key) => ({ agentId: i.agentId, key })));
  const objects = await latestObjects(client, keys, onSources);
  const missing: AgentKey[] = [];
  for (const [agentId, mine] of objects) {
    for (const o of mine.values()) {
      const sourceKey = WORKLOAD_KINDS.has(o.kind) ? sourceKeyOf(o) : undefined;
      if (sourceKey !== undefined && !mine.has(sourceKey)) missing.push({ agentId, key: sourceKey });
    }
  }
  if (missing.length > 0) {
    for (const [agentId, found] of await latestObjects(client, missing, [])) {
      for (const [key, o] of found) objects.get(agentId)!.set(key, o);
    }
  }
  return objects;
}

/** Moves the agents' open deployments of the given workloads and sources as far as the objects say. */
export async function evaluate(round: Round, items: EvalItem[]): Promise<void> {
  items = items.filter((i) => i.keys.length > 0 || i.sourceKeys.length > 0);
  if (items.length === 0) return;
  const objects = await objectsAround(round.client, items);
  for (const item of items) {
    if (item.fresh.size > 0) await ensure(round, item.agentId, objects.get(item.agentId) ?? new Map(), item.fresh);
  }
  const workloadKeys: AgentKey[] = [];
  const sourceKeys: AgentKey[] = [];
  for (const item of items) {
    const mine = objects.get(item.agentId) ?? new Map<string, ReportedObject>();
    const keys = new Set([...item.keys, ...[...mine.values()].filter((o) => WORKLOAD_KINDS.has(o.kind)).map(objectKey)]);
    for (const key of keys) workloadKeys.push({ agentId: item.agentId, key });
    for (const key of item.sourceKeys) sourceKeys.push({ agentId: item.agentId, key });
  }
  const split = workloadKeys.map((k) => k.key.split('/'));
  const [kinds, namespaces, names] = [split.map((p) => p[0]!), split.map((p) => p[1]!), split.map((p) => p.slice(2).join('/'))];
  const { rows } = await round.client.query<DeploymentRow>(
    `SELECT DISTINCT ON (d.id) ${DEPLOYMENT_COLUMNS}
     FROM (
       SELECT d.id FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[]) AS k(agent_id, kind, namespace, name)
       JOIN deployments d ON d.agent_id = k.agent_id AND d.kind = k.kind AND d.namespace = k.namespace AND d.name = k.name
       WHERE d.state IN ('pending', 'fetched', 'failed')
       UNION
       SELECT d.id FROM unnest($5::uuid[], $6::text[]) AS s(agent_id, source_key)
       JOIN deployments d ON d.agent_id = s.agent_id AND d.source_key = s.source_key
       WHERE d.state IN ('pending', 'fetched', 'failed')
     ) AS open
     JOIN deployments d ON d.id = open.id JOIN push_events e ON e.id = d.event_id
     WHERE d.state <> 'failed' OR d.created_at > $7
     ORDER BY d.id`,
    [workloadKeys.map((k) => k.agentId), kinds, namespaces, names, sourceKeys.map((k) => k.agentId), sourceKeys.map((k) => k.key), new Date(Date.now() - round.options.timeoutMs)],
  );
  if (rows.length === 0) return;

  const at = new Date();
  const changes = new Map<string, { row: DeploymentRow; steps: Step[]; target: CommitTarget | undefined }>();
  const stateOf = (row: DeploymentRow) => changes.get(row.id)?.steps.at(-1)?.state ?? row.state;
  for (const row of rows) {
    const event = triggerEventOf(row);
    const mine = objects.get(row.agent_id);
    if (!event || !mine) continue;
    const source = mine.get(row.source_key);
    const steps = advance(
      { state: row.state, sourceType: row.source_type, sha: row.commit_sha, fetchedRevision: row.fetched_revision, trigger: event.trigger },
      source,
      mine.get(rowKey(row)),
    );
    if (steps.length === 0) continue;
    let target: CommitTarget | undefined;
    if (row.source_type === 'oci' && source && steps.some((s) => s.state === 'fetched')) target = ociCommitOf(source, round.options.gitlabUrl);
    changes.set(row.id, { row, steps, target });
  }
  // A later event that got to a workload first supersedes the earlier ones still on their way.
  // A snapshot: the superseded ones added below supersede nothing.
  const movers = Array.from(changes.values());
  const byWorkload = new Map<string, DeploymentRow[]>();
  for (const row of rows) {
    const key = `${row.agent_id}|${rowKey(row)}`;
    let list = byWorkload.get(key);
    if (!list) byWorkload.set(key, (list = []));
    list.push(row);
  }
  for (const { row, steps } of movers) {
    for (const older of byWorkload.get(`${row.agent_id}|${rowKey(row)}`) ?? []) {
      const olderState = stateOf(older);
      if (BigInt(older.event_id) >= BigInt(row.event_id)) continue;
      if (olderState !== 'pending' && olderState !== 'fetched') continue;
      const sha = changes.get(row.id)?.target?.sha ?? row.commit_sha;
      if (older.commit_sha !== null && sha !== null && older.commit_sha === sha) continue;
      const existing = changes.get(older.id);
      const step: Step = { state: 'superseded', revision: steps.at(-1)!.revision, message: `event ${row.event_id} got there first` };
      if (existing) existing.steps.push(step);
      else changes.set(older.id, { row: older, steps: [step], target: undefined });
    }
  }
  if (changes.size > 0) await write(round, [...changes.values()], at);
}

export async function write(round: Round, changes: { row: DeploymentRow; steps: Step[]; target: CommitTarget | undefined }[], at: Date): Promise<void> {
  const iso = at.toISOString();
  const updates = changes.map(({ row, steps, target }) => {
    const last = steps.at(-1)!;
    const outcome = steps.toReversed().find((s) => s.reason !== undefined || s.message !== undefined);
    return {
      id: row.id,
      state: last.state,
      at: iso,
      revision: last.revision,
      fetched_revision: steps.find((s) => s.fetchedRevision !== undefined)?.fetchedRevision ?? null,
      reason: outcome?.reason ?? null,
      message: outcome?.message ?? null,
      status_project: target?.project ?? null,
      commit_sha: target?.sha ?? null,
      status_ref: target?.ref ?? null,
      timeline: steps.map((s) => ({ state: s.state, at: iso })),
    };
  });
  await round.client.query(
    `UPDATE deployments d SET
       state = t.state, state_at = t.at::timestamptz, revision = COALESCE(t.revision, d.revision),
       fetched_revision = COALESCE(t.fetched_revision, d.fetched_revision),
       reason = COALESCE(t.reason, d.reason), message = COALESCE(t.message, d.message),
       status_project = COALESCE(t.status_project, d.status_project), commit_sha = COALESCE(t.commit_sha, d.commit_sha),
       status_ref = COALESCE(t.status_ref, d.status_ref), timeline = d.timeline || t.timeline
     FROM jsonb_to_recordset($1::jsonb) AS t(id bigint, state text, at text, revision text, fetched_revision text, reason text,
                                             message text, status_project text, commit_sha text, status_ref text, timeline jsonb)
     WHERE d.id = t.id`,
    [JSON.stringify(updates)],
  );
  for (const { row, steps, target } of changes) {
    round.outcome.eventIds.add(row.event_id);
    const commit = target ?? (row.status_project && row.commit_sha ? { project: row.status_project, sha: row.commit_sha, ref: row.status_ref } : undefined);
    const d = { id: row.id, eventId: row.event_id, agentId: row.agent_id, kind: row.dkind, namespace: row.namespace, name: row.name };
    for (const step of steps) {
      if (FINAL_STATES.has(step.state)) {
        round.outcome.finished.push({ state: step.state, latencyMs: at.getTime() - row.received_at.getTime() });
      }
      const said = [step.reason, step.message].filter(Boolean).join(': ');
      if (step.state === 'fetched') {
        const [sourceKind, ...rest] = row.source_key.split('/');
        await round.status(d, commit, 'running', `${sourceKind} ${rest.join('/')} fetched ${step.revision ?? 'it'}; waiting for ${row.dkind} ${row.namespace}/${row.name}`);
      } else if (step.state === 'applied') {
        await round.status(d, commit, 'success', said || `Applied revision ${step.revision ?? ''}`);
      } else if (step.state === 'failed') {
        await round.status(d, commit, 'failed', said || `Failed at revision ${step.revision ?? ''}`);
      } else if (step.state === 'superseded') {
        await round.status(d, commit, 'canceled', `Superseded: a later push to ${row.status_ref ?? row.ref} reached ${row.dkind} ${row.namespace}/${row.name} first`);
      } else if (step.state === 'timed_out') {
        await round.status(d, commit, 'failed', `Timed out: ${step.message ?? ''}`);
      }
    }
  }
}
