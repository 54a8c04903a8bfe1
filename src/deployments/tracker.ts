/**
 * Deployments: every event delivered to an agent, followed to each Kustomization or HelmRelease
 * it affects, through `pending` → `fetched` → `applied` | `failed`, or `superseded` (a later
 * push to the same ref got there first), or `timed_out` (KASGATE_DEPLOYMENT_TIMEOUT).
 *
 * Created when a delivery is written (deliveries.ts), for the workloads the agent has reported
 * on a matching source; and when the agent reports a workload or source that no deployment
 * covers yet (it had not reported status when the event came, or the push itself created the
 * Kustomization): then for the latest event delivered within the timeout that matches it, dated
 * from its delivery. Older events are not followed to objects that appeared after them: they
 * would only be superseded.
 *
 * Moved on every status write of the agent. All of it runs in the caller's transaction, under
 * the agent's lock (db/transaction.ts), so a delivery and the status that moves it are seen in
 * one order on every replica; the commit statuses it owes go into the same transaction.
 *
 * Here the entry points; made in new-deployments.ts, moved in moves.ts, one transaction's work
 * and what it owes GitLab in round.ts.
 */
import type pg from 'pg';
import { inTransaction, tryLockAgent } from '../db/transaction.js';
import type { ReportedObject } from '../protocol/kasgate-v1.js';
import { canFollow, objectKey, sourceKeyOf, SOURCE_KINDS, sourceTakes, WORKLOAD_KINDS } from './matching.js';
import { advance } from './progress.js';
import { DEPLOYMENT_COLUMNS, evaluate, write, type DeploymentRow } from './moves.js';
import { insert, type Candidate } from './new-deployments.js';
import { emptyOutcome, Round, type TrackerOptions, type TrackerOutcome } from './round.js';
import type { TriggerEvent } from './trigger-events.js';

export { emptyOutcome, type TrackerOptions, type TrackerOutcome } from './round.js';

/** `30m`, `90s`, `2h`: how KASGATE_DEPLOYMENT_TIMEOUT reads in a status description. */
function formatDuration(ms: number): string {
  for (const [unit, size] of [['d', 86_400_000], ['h', 3_600_000], ['m', 60_000], ['s', 1000]] as const) {
    if (ms >= size && ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}

export function createDeploymentTracker(options: TrackerOptions) {
  const { metrics, log } = options;
  const agentNames = new Map<string, string>();
  const roundOf = (client: pg.PoolClient) => new Round(client, options, agentNames);

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
      const round = roundOf(client);
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
      const round = roundOf(client);
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
          const round = roundOf(client);
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
