/**
 * What the status page needs from cluster state (DESIGN.md "Cluster state, and the way back to
 * GitLab"): each agent's Flux objects, and for each event its deliveries and deployments. The
 * cluster-state module implements this; until it is wired in, `noClusterState` answers empty and
 * the page leaves out the columns and tables that would show it.
 */

export type ReadyStatus = 'True' | 'False' | 'Unknown';

export type DeploymentState = 'pending' | 'fetched' | 'applied' | 'failed' | 'superseded' | 'timed_out';

/** One Flux object as its agent last reported it (the contract's OBJECT plus reportedAt and stale). */
export interface FluxObjectView {
  kind: string;
  namespace: string;
  name: string;
  ready: ReadyStatus;
  reason?: string | null;
  message?: string | null;
  revision?: string | null;
  suspended?: boolean;
  /** Reported by a connection that has closed since. */
  stale?: boolean;
  updatedAt?: string | null;
  reportedAt?: string | null;
}

export interface AgentObjects {
  objects: FluxObjectView[];
  /** The agent reported more than KASGATE_MAX_STATUS_OBJECTS and the set was cut. */
  truncated: boolean;
}

export interface DeliveryView {
  agent: { id: string; name: string };
  at: string;
}

export interface DeploymentView {
  agent: { id: string; name: string };
  object: { kind: string; namespace: string; name: string };
  /** The source it goes through. */
  source?: { kind: string; namespace: string; name: string };
  state: DeploymentState;
  revision?: string | null;
  /** Flux's Ready reason and message with the outcome (or why it was superseded or timed out). */
  reason?: string | null;
  message?: string | null;
  /** When the latest state was reached. */
  at: string;
  /** From the webhook's arrival to the outcome; null while there is none. */
  latencyMs: number | null;
  timeline: { state: DeploymentState; at: string }[];
}

export interface ClusterView {
  /** False until cluster state is wired in: the page then shows no deployment columns or object tables. */
  readonly enabled: boolean;
  objectsOf(agentId: string): Promise<AgentObjects>;
  /** Per-agent deliveries of one event, oldest first. */
  deliveriesOf(eventId: string): Promise<DeliveryView[]>;
  /** Deployments of these events, by event id (events without any are absent). */
  deploymentsOf(eventIds: string[]): Promise<Map<string, DeploymentView[]>>;
}

export const noClusterState: ClusterView = {
  enabled: false,
  objectsOf: async () => ({ objects: [], truncated: false }),
  deliveriesOf: async () => [],
  deploymentsOf: async () => new Map(),
};
