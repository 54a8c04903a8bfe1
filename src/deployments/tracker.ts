/**
 * Deployments: every event delivered to an agent, followed to each Kustomization or HelmRelease
 * it affects, through `pending` → `fetched` → `applied` | `failed`, or `superseded` (a later
 * push to the same ref got there first), or `timed_out` (KASGATE_DEPLOYMENT_TIMEOUT).
 *
 * Created when a delivery is recorded (deliveries.ts), for the workloads the agent has reported
 * on a matching source; and when the agent reports a workload or source that no deployment
 * covers yet (it had not reported status when the event came, or the push itself created the
 * Kustomization): then for the latest event delivered within the timeout that matches it, dated
 * from its delivery. Older events are not followed to objects that appeared after them: they
 * would only be superseded.
 *
 * Moved on every status write of the agent. All of it runs in the caller's transaction, under
 * the agent's lock (db/transaction.ts), so a delivery and the status that moves it are seen in
 * one order on every replica; the commit statuses it owes go into the same transaction.
 */
import type pg from 'pg';
import type { Logger } from 'pino';
import { latestObjects, type AgentKey } from '../cluster/object-store.js';
import { tryLockAgent, inTransaction } from '../db/transaction.js';
import { enqueueStatuses, type CommitStatusState, type StatusIntent } from '../gitlab/commit-statuses/outbox.js';
import type { Metrics } from '../metrics.js';
import type { ReportedObject } from '../protocol/kasgate-v1.js';
import {
  advance,
  FINAL_STATES,
  objectKey,
  ociCommitOf,
  ociRepository,
  sourceKeyOf,
  sourceTakes,
  statusDescription,
  canFollow,
  SOURCE_KINDS,
  WORKLOAD_KINDS,
  type CommitTarget,
  type DeploymentState,
  type Step,
} from './matching.js';
import { TRIGGER_COLUMNS, triggerEventOf, type TriggerEvent, type TriggerRow } from './trigger-events.js';

export interface TrackerOptions {
  timeoutMs: number;
  /** KASGATE_PUBLIC_URL: commit statuses link to <publicUrl>/ui/events/<id>. */
  publicUrl: string | undefined;
  /** KASGATE_GITLAB_URL: OCI artifacts' origin URLs are projects on it. */
  gitlabUrl: string | undefined;
  /** Queue commit statuses (only when the GitLab API is configured). */
  statuses: boolean;
  metrics: Metrics;
  log: Logger;
}

/** What one transaction changed: `settle` it once committed. */
export interface TrackerOutcome {
  finished: { state: DeploymentState; latencyMs: number }[];
  statusesQueued: number;
  eventIds: Set<string>;
}

export const emptyOutcome = (): TrackerOutcome => ({ finished: [], statusesQueued: 0, eventIds: new Set() });

interface DeploymentRow extends TriggerRow {
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

const DEPLOYMENT_COLUMNS = `d.id, d.agent_id, d.kind AS dkind, d.namespace, d.name, d.source_key, d.source_type, d.status_project,
  d.commit_sha, d.status_ref, d.state, d.fetched_revision, ${TRIGGER_COLUMNS}`;

const rowKey = (row: DeploymentRow) => `${row.dkind}/${row.namespace}/${row.name}`;

/** `30m`, `90s`, `2h`: how KASGATE_DEPLOYMENT_TIMEOUT reads in a status description. */
function formatDuration(ms: number): string {
  for (const [unit, size] of [['d', 86_400_000], ['h', 3_600_000], ['m', 60_000], ['s', 1000]] as const) {
    if (ms >= size && ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}

/** One agent's changed objects, for `evaluate`. */
interface EvalItem {
  agentId: string;
  /** Changed workloads. */
  keys: string[];
  /** Changed sources. */
  sourceKeys: string[];
  /** Objects new to their connection or re-pointed: look for deployments they miss. */
  fresh: ReadonlySet<string>;
}

interface Candidate {
  event: TriggerEvent;
  agentId: string;
  deliveredAt: Date;
  source: ReportedObject;
  workload: ReportedObject;
}

/** Agent names never change (PATCH cannot rename); a few thousand are cached for status names. */
const NAME_CACHE = 10_000;

export function createDeploymentTracker(options: TrackerOptions) {
  const { metrics, log } = options;
  const agentNames = new Map<string, string>();

  /** Context of one transaction: agent names (for status names), what changed. */
  class Round {
    readonly outcome = emptyOutcome();
    readonly intents: StatusIntent[] = [];
    constructor(readonly client: pg.PoolClient) {}

    async agentName(agentId: string): Promise<string | undefined> {
      if (!agentNames.has(agentId)) {
        const { rows } = await this.client.query<{ name: string }>('SELECT name FROM agents WHERE id = $1', [agentId]);
        if (!rows[0]) return undefined;
        if (agentNames.size >= NAME_CACHE) agentNames.delete(agentNames.keys().next().value!);
        agentNames.set(agentId, rows[0].name);
      }
      return agentNames.get(agentId);
    }

    async status(
      d: { id: string; eventId: string; agentId: string; kind: string; namespace: string; name: string },
      target: CommitTarget | undefined,
      state: CommitStatusState,
      description: string,
    ): Promise<void> {
      if (!options.statuses || !target) return;
      const agent = await this.agentName(d.agentId);
      if (agent === undefined) return;
      const targetUrl = options.publicUrl ? `${options.publicUrl}/ui/events/${d.eventId}` : null;
      this.intents.push({
        deploymentId: d.id,
        eventId: d.eventId,
        project: target.project,
        sha: target.sha,
        name: `kasgate/${agent}/${d.kind}/${d.namespace}/${d.name}`.slice(0, 255),
        state,
        ref: target.ref,
        targetUrl: targetUrl && targetUrl.length <= 255 ? targetUrl : null,
        description: statusDescription(description),
      });
    }

    async finish(): Promise<TrackerOutcome> {
      this.outcome.statusesQueued += await enqueueStatuses(this.client, this.intents);
      return this.outcome;
    }
  }

  async function insert(round: Round, candidates: Candidate[]): Promise<void> {
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
  async function ensure(round: Round, agentId: string, objects: Map<string, ReportedObject>, fresh: ReadonlySet<string>): Promise<void> {
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
    const { rows } = await round.client.query<TriggerRow & { delivered_at: Date }>(
      `SELECT DISTINCT ON (lower(e.project_path), e.kind, e.source, COALESCE(e.ref, e.repository || ':' || e.tag)) ${TRIGGER_COLUMNS}, d.delivered_at
       FROM event_deliveries d JOIN push_events e ON e.id = d.event_id
       WHERE d.agent_id = $1 AND d.delivered_at > $2 AND lower(e.project_path) = ANY($3::text[])
       ORDER BY lower(e.project_path), e.kind, e.source, COALESCE(e.ref, e.repository || ':' || e.tag), e.id DESC`,
      [agentId, new Date(Date.now() - options.timeoutMs), projects],
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
  async function evaluate(round: Round, items: EvalItem[]): Promise<void> {
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
      [workloadKeys.map((k) => k.agentId), kinds, namespaces, names, sourceKeys.map((k) => k.agentId), sourceKeys.map((k) => k.key), new Date(Date.now() - options.timeoutMs)],
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
      if (row.source_type === 'oci' && source && steps.some((s) => s.state === 'fetched')) target = ociCommitOf(source, options.gitlabUrl);
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

  async function write(round: Round, changes: { row: DeploymentRow; steps: Step[]; target: CommitTarget | undefined }[], at: Date): Promise<void> {
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

  return {
    /**
     * Deliveries just recorded (first per event and agent): a pending deployment for each
     * workload the agent has reported on a source the event matches. `objects` holds the agents'
     * candidate sources and their workloads (object-store candidateObjects).
     */
    async onDelivered(
      client: pg.PoolClient,
      deliveries: { eventId: string; agentId: string; deliveredAt: Date }[],
      events: Map<string, TriggerEvent>,
      objects: Map<string, ReportedObject[]>,
    ): Promise<TrackerOutcome> {
      const round = new Round(client);
      const candidates: Candidate[] = [];
      const touched = new Map<string, { keys: Set<string>; sources: Set<string> }>();
      for (const delivery of deliveries) {
        const event = events.get(delivery.eventId);
        const mine = objects.get(delivery.agentId);
        if (!event || !mine) continue;
        const byKey = new Map(mine.map((o) => [objectKey(o), o]));
        for (const workload of mine) {
          if (!WORKLOAD_KINDS.has(workload.kind) || !canFollow(workload)) continue;
          const source = byKey.get(sourceKeyOf(workload) ?? '');
          if (!source || !SOURCE_KINDS.has(source.kind) || !sourceTakes(event.trigger, source)) continue;
          candidates.push({ event, agentId: delivery.agentId, deliveredAt: delivery.deliveredAt, source, workload });
          // Usually a new deployment stays pending; it moves at once only when the source already
          // has the commit (Flux polled, or the agent reported first). Only then the database is asked.
          const sourceType = source.kind === 'OCIRepository' ? ('oci' as const) : ('git' as const);
          const tracked = { state: 'pending' as const, sourceType, sha: event.target?.sha ?? null, fetchedRevision: null, trigger: event.trigger };
          if (advance(tracked, source, workload).length === 0) continue;
          let t = touched.get(delivery.agentId);
          if (!t) touched.set(delivery.agentId, (t = { keys: new Set(), sources: new Set() }));
          t.keys.add(objectKey(workload));
          t.sources.add(objectKey(source));
        }
      }
      await insert(round, candidates);
      await evaluate(
        round,
        [...touched].map(([agentId, t]) => ({ agentId, keys: [...t.keys], sourceKeys: [...t.sources], fresh: new Set<string>() })),
      );
      return round.finish();
    },

    /**
     * Agents' objects changed (status writes in this transaction): move what is open, and create
     * what is missing for the `fresh` ones (new to their connection, or now on another source,
     * project or ref). Any number of agents, in a few statements.
     */
    async onStatus(
      client: pg.PoolClient,
      changes: { agentId: string; upserted: ReportedObject[]; fresh: ReadonlySet<string> }[],
    ): Promise<TrackerOutcome> {
      const round = new Round(client);
      await evaluate(
        round,
        changes.map((c) => ({
          agentId: c.agentId,
          keys: c.upserted.filter((o) => WORKLOAD_KINDS.has(o.kind)).map(objectKey),
          sourceKeys: c.upserted.filter((o) => SOURCE_KINDS.has(o.kind)).map(objectKey),
          fresh: c.fresh,
        })),
      );
      return round.finish();
    },

    /** Times out what got no outcome within the timeout; safe on several replicas at once (per-agent lock, skipped when held). */
    async sweep(pool: pg.Pool): Promise<TrackerOutcome> {
      const total = emptyOutcome();
      const cutoff = new Date(Date.now() - options.timeoutMs);
      const { rows: agents } = await pool.query<{ agent_id: string }>(
        `SELECT DISTINCT d.agent_id FROM deployments d JOIN push_events e ON e.id = d.event_id
         WHERE d.state IN ('pending', 'fetched') AND d.created_at < $1 LIMIT 100`,
        [cutoff],
      );
      for (const { agent_id: agentId } of agents) {
        const outcome = await inTransaction(pool, async (client) => {
          if (!(await tryLockAgent(client, agentId))) return emptyOutcome();
          const round = new Round(client);
          const at = new Date();
          const { rows } = await client.query<DeploymentRow>(
            `SELECT ${DEPLOYMENT_COLUMNS} FROM deployments d JOIN push_events e ON e.id = d.event_id
             WHERE d.agent_id = $1 AND d.state IN ('pending', 'fetched') AND d.created_at < $2`,
            [agentId, cutoff],
          );
          const waitedFor = (row: DeploymentRow) =>
            row.state === 'pending' ? `${row.source_key.split('/')[0]} ${row.source_key.split('/').slice(1).join('/')} to fetch it` : `${row.dkind} ${row.namespace}/${row.name} to apply it`;
          const changes = rows.map((row) => ({
            row,
            steps: [{ state: 'timed_out' as const, revision: null, message: `no outcome within ${formatDuration(options.timeoutMs)} (waited for ${waitedFor(row)})` }],
            target: undefined,
          }));
          await write(round, changes, at);
          return round.finish();
        }).catch((err: Error) => {
          log.warn({ err: err.message, agentId }, 'deployment timeout sweep failed for an agent; the next sweep retries');
          return emptyOutcome();
        });
        total.finished.push(...outcome.finished);
        total.statusesQueued += outcome.statusesQueued;
        for (const id of outcome.eventIds) total.eventIds.add(id);
      }
      return total;
    },

    /** After the commit: metrics. */
    settle(outcome: TrackerOutcome): void {
      for (const { state, latencyMs } of outcome.finished) {
        metrics.deploymentsFinished.inc({ state });
        if (state === 'applied') metrics.pushToApplied.observe(Math.max(0, latencyMs) / 1000);
      }
    },
  };
}

export type DeploymentTracker = ReturnType<typeof createDeploymentTracker>;
