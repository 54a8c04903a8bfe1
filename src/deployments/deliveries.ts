/**
 * Per-agent deliveries: (event, agent, first delivered at). The hub and replay call `record`
 * for every frame written (src/cluster/cluster-state.ts keeps them per agent, off the hot path);
 * they are written with the agent's other work, in its transaction, by `writeDeliveries`:
 * first wins, and the deliveries that were new get their deployments.
 */
import type pg from 'pg';
import { candidateObjects } from '../cluster/object-store.js';
import { emptyOutcome, type DeploymentTracker, type TrackerOutcome } from './tracker.js';
import { readTriggerEvents } from './trigger-events.js';

export interface Delivery {
  eventId: string;
  agentId: string;
  deliveredAt: Date;
}

export interface DeliveryRecorder {
  /** A push frame for `eventId` was written to a connection of `agentId`. */
  record(eventId: string, agentId: string): void;
}

/** Inside the caller's transaction, which holds the agents' locks. */
export async function writeDeliveries(client: pg.PoolClient, tracker: DeploymentTracker, deliveries: Delivery[]): Promise<TrackerOutcome> {
  if (deliveries.length === 0) return emptyOutcome();
  const { rows } = await client.query<{ event_id: string; agent_id: string; delivered_at: Date }>(
    `INSERT INTO event_deliveries (event_id, agent_id, delivered_at)
     SELECT d.event_id, d.agent_id, d.at
     FROM unnest($1::bigint[], $2::uuid[], $3::timestamptz[]) AS d(event_id, agent_id, at)
     WHERE EXISTS (SELECT 1 FROM push_events e WHERE e.id = d.event_id)
       AND EXISTS (SELECT 1 FROM agents a WHERE a.id = d.agent_id)
     ON CONFLICT (event_id, agent_id) DO NOTHING
     RETURNING event_id, agent_id, delivered_at`,
    [deliveries.map((d) => d.eventId), deliveries.map((d) => d.agentId), deliveries.map((d) => d.deliveredAt)],
  );
  const outcome = emptyOutcome();
  if (rows.length === 0) return outcome;
  const fresh = rows.map((r) => ({ eventId: r.event_id, agentId: r.agent_id, deliveredAt: r.delivered_at }));
  for (const d of fresh) outcome.eventIds.add(d.eventId);
  const events = await readTriggerEvents(client, [...new Set(fresh.map((d) => d.eventId))]);
  if (events.size === 0) return outcome;
  const projects = [...new Set([...events.values()].map((e) => e.trigger.projectPath.toLowerCase()))];
  const objects = await candidateObjects(client, [...new Set(fresh.map((d) => d.agentId))], projects);
  if (objects.size === 0) return outcome;
  const tracked = await tracker.onDelivered(client, fresh, events, objects);
  for (const id of outcome.eventIds) tracked.eventIds.add(id);
  return tracked;
}
