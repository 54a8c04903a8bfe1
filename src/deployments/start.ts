/**
 * Following events into clusters, wired together: the agents' status (cluster state), the
 * deliveries, the deployment tracker and its sweeper, and the commit-status outbox when GitLab's
 * API is configured. All of it writes from the background pool, off the webhook path.
 */
import type pg from 'pg';
import type { Logger } from 'pino';
import type { Config } from '../config.js';
import { createClusterState } from '../cluster/cluster-state.js';
import type { Presence } from '../fanout/presence.js';
import type { GitLabApi } from '../gitlab/api/client.js';
import { startStatusWorker } from '../gitlab/commit-statuses/outbox.js';
import type { Metrics } from '../metrics.js';
import type { ClusterView } from '../ui/cluster-view.js';
import type { ChangeFeed } from './changes.js';
import { createDeliveryWriter } from './deliveries.js';
import { createDeploymentStore } from './deployment-store.js';
import { startDeploymentSweeper } from './sweeper.js';
import { createDeploymentTracker } from './tracker.js';

export function startDeploymentTracking(deps: {
  config: Config;
  pool: pg.Pool;
  gitlabApi: GitLabApi | undefined;
  presence: Presence;
  changes: ChangeFeed;
  metrics: Metrics;
  log: Logger;
}) {
  const { config, pool, gitlabApi, presence, changes, metrics, log } = deps;
  const statusWorker = gitlabApi
    ? startStatusWorker({
        pool,
        api: gitlabApi,
        replicaId: config.replicaId,
        leaseMs: 3 * config.gitlab!.timeoutMs + 5000,
        expireAfterMs: config.eventRetentionMs,
        metrics,
        log,
      })
    : undefined;
  const tracker = createDeploymentTracker({
    timeoutMs: config.deploymentTimeoutMs,
    publicUrl: config.publicUrl,
    gitlabUrl: config.gitlab?.url,
    statuses: gitlabApi !== undefined,
    metrics,
    log,
  });
  const announce = (outcome: { eventIds: Set<string>; statusesQueued: number }) => {
    changes.eventsChanged(outcome.eventIds);
    if (outcome.statusesQueued > 0) statusWorker?.nudge();
  };
  const cluster = createClusterState({
    pool,
    presence,
    tracker,
    metrics,
    log,
    maxObjects: config.maxStatusObjects,
    replicaId: config.replicaId,
    onWritten: (agentIds, outcome) => {
      for (const agentId of agentIds) changes.objectsChanged(agentId);
      announce(outcome);
    },
  });
  const deliveries = createDeliveryWriter({
    pool,
    tracker,
    metrics,
    log,
    onDelivered: (eventIds) => changes.eventsChanged(eventIds, true),
    onWritten: announce,
  });
  const sweeper = startDeploymentSweeper({
    pool,
    tracker,
    timeoutMs: config.deploymentTimeoutMs,
    keepMs: config.eventRetentionMs,
    log,
    onSwept: announce,
  });
  const deployments = createDeploymentStore(pool);
  const clusterView: ClusterView = {
    objectsOf: (agentId) => cluster.objectsOf(agentId),
    deliveriesOf: (eventId) => deployments.deliveriesOf(eventId),
    eventDeployments: (eventId) => deployments.forEvent(eventId),
    deploymentsOf: (eventIds) => deployments.forEvents(eventIds),
  };

  return {
    statusWorker,
    cluster,
    deliveries,
    deployments,
    clusterView,
    /** What stops them, in the order they started (the caller runs its closers in reverse). */
    closers: [
      ...(statusWorker ? [() => statusWorker.stop()] : []),
      () => cluster.close(),
      () => deliveries.close(),
      () => sweeper.stop(),
    ],
  };
}
