/** Reading deliveries and deployments: for GET /api/v1/events/{id} and the status page. */
import type pg from 'pg';
import type { DeploymentState } from './progress.js';

export interface AgentRef {
  id: string;
  name: string;
}

export interface Delivery {
  agent: AgentRef;
  /** First delivery of the event to a connection of this agent (ISO 8601). */
  at: string;
}

export interface Deployment {
  agent: AgentRef;
  object: { kind: string; namespace: string; name: string };
  /** The source it goes through. */
  source: { kind: string; namespace: string; name: string };
  state: DeploymentState;
  /** The revision seen with the latest state. */
  revision: string | null;
  /** When the latest state was reached. */
  at: string;
  /** From the webhook's arrival to the outcome; null until there is one. */
  latencyMs: number | null;
  /** Flux's Ready reason and message with the outcome (or why it was superseded or timed out). */
  reason: string | null;
  message: string | null;
  /** The commit its status is for (null for an OCI artifact whose origin is not known yet). */
  commitSha: string | null;
  timeline: { state: DeploymentState; at: string }[];
}

export interface EventDeployments {
  deliveries: Delivery[];
  deployments: Deployment[];
}

interface DeploymentRow {
  event_id: string;
  agent_id: string;
  agent_name: string;
  kind: string;
  namespace: string;
  name: string;
  source_key: string;
  state: DeploymentState;
  revision: string | null;
  state_at: Date;
  received_at: Date;
  reason: string | null;
  message: string | null;
  commit_sha: string | null;
  timeline: { state: DeploymentState; at: string }[];
}

const FINAL = new Set<DeploymentState>(['applied', 'failed', 'superseded', 'timed_out']);

function toDeployment(row: DeploymentRow): Deployment {
  const [kind, namespace, ...name] = row.source_key.split('/');
  return {
    agent: { id: row.agent_id, name: row.agent_name },
    object: { kind: row.kind, namespace: row.namespace, name: row.name },
    source: { kind: kind!, namespace: namespace!, name: name.join('/') },
    state: row.state,
    revision: row.revision,
    at: row.state_at.toISOString(),
    latencyMs: FINAL.has(row.state) ? Math.max(0, row.state_at.getTime() - row.received_at.getTime()) : null,
    reason: row.reason,
    message: row.message,
    commitSha: row.commit_sha,
    timeline: row.timeline,
  };
}

export function createDeploymentStore(pool: pg.Pool) {
  async function deploymentsOf(eventIds: string[]): Promise<DeploymentRow[]> {
    const { rows } = await pool.query<DeploymentRow>(
      `SELECT d.event_id, d.agent_id, a.name AS agent_name, d.kind, d.namespace, d.name, d.source_key, d.state, d.revision,
              d.state_at, e.received_at, d.reason, d.message, d.commit_sha, d.timeline
       FROM deployments d JOIN agents a ON a.id = d.agent_id JOIN push_events e ON e.id = d.event_id
       WHERE d.event_id = ANY($1::bigint[])
       ORDER BY d.event_id, a.name, d.kind, d.namespace, d.name`,
      [eventIds],
    );
    return rows;
  }

  /** One event's deliveries, by agent name. */
  async function deliveriesOf(eventId: string): Promise<Delivery[]> {
    const { rows } = await pool.query<{ agent_id: string; agent_name: string; delivered_at: Date }>(
      `SELECT a.id AS agent_id, a.name AS agent_name, min(d.delivered_at) AS delivered_at
       FROM event_deliveries d CROSS JOIN LATERAL unnest(d.agent_ids) AS u(agent_id) JOIN agents a ON a.id = u.agent_id
       WHERE d.event_id = $1 GROUP BY a.id, a.name ORDER BY a.name`,
      [eventId],
    );
    return rows.map((r) => ({ agent: { id: r.agent_id, name: r.agent_name }, at: r.delivered_at.toISOString() }));
  }

  return {
    /**
     * One event's deliveries and deployments. Deployments first, then deliveries: a deployment
     * commits with or after its delivery, so whatever deployment this shows, its delivery is shown
     * too (read side by side, a commit between the two reads could show a pending deployment of an
     * agent with no delivery). Readers of the two halves keep that order.
     */
    async forEvent(eventId: string): Promise<EventDeployments> {
      const deployments = (await deploymentsOf([eventId])).map(toDeployment);
      return { deliveries: await deliveriesOf(eventId), deployments };
    },

    deliveriesOf,

    /** The deployments of several events (a page of the event list), by event id; events without any are absent. */
    async forEvents(eventIds: string[]): Promise<Map<string, Deployment[]>> {
      const byEvent = new Map<string, Deployment[]>();
      if (eventIds.length === 0) return byEvent;
      for (const row of await deploymentsOf(eventIds)) {
        let list = byEvent.get(row.event_id);
        if (!list) byEvent.set(row.event_id, (list = []));
        list.push(toDeployment(row));
      }
      return byEvent;
    },
  };
}

export type DeploymentStore = ReturnType<typeof createDeploymentStore>;
