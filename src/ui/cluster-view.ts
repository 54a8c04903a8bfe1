/**
 * What the status page needs from cluster state (DESIGN.md "Cluster state, and the way back to
 * GitLab"): each agent's Flux objects, and for each event its deliveries and deployments
 * (context.ts wires in src/cluster and src/deployments).
 */
import type { Delivery, Deployment } from '../deployments/deployment-store.js';

export type { DeploymentState } from '../deployments/progress.js';

export type ReadyStatus = 'True' | 'False' | 'Unknown';

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

export type DeliveryView = Delivery;

/** A deployment as the page shows it: what it waits for and Flux's words are shown when known. */
export type DeploymentView = Pick<Deployment, 'agent' | 'object' | 'state' | 'at' | 'latencyMs' | 'timeline'> &
  Partial<Pick<Deployment, 'source' | 'revision' | 'reason' | 'message'>>;

export interface ClusterView {
  objectsOf(agentId: string): Promise<AgentObjects>;
  /** Per-agent deliveries of one event, oldest first. */
  deliveriesOf(eventId: string): Promise<DeliveryView[]>;
  /** One event's deployments and deliveries, read in that order (deployment-store.ts forEvent says why). */
  eventDeployments(eventId: string): Promise<{ deliveries: DeliveryView[]; deployments: DeploymentView[] }>;
  /** Deployments of these events, by event id (events without any are absent). */
  deploymentsOf(eventIds: string[]): Promise<Map<string, DeploymentView[]>>;
}
