/** Every gateway metric, on a registry of its own (several apps can share a process in tests). */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export function createMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const registers = [registry];
  return {
    registry,
    httpDuration: new Histogram({
      name: 'kasgate_http_request_duration_seconds',
      help: 'HTTP request duration by route, method and status code',
      labelNames: ['method', 'route', 'status_code'] as const,
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers,
    }),
    webhooks: new Counter({
      name: 'kasgate_webhooks_total',
      help: 'Webhook deliveries by kind (push, tag_push, repository_update, pipeline, registry, other, unknown) and outcome',
      labelNames: ['kind', 'outcome'] as const,
      registers,
    }),
    registryEvents: new Counter({
      name: 'kasgate_registry_events_total',
      help: 'Events inside container registry notifications, by outcome (accepted, duplicate, not_push, untagged, unknown_project)',
      labelNames: ['outcome'] as const,
      registers,
    }),
    ingestDuration: new Histogram({
      name: 'kasgate_webhook_ingest_duration_seconds',
      help: 'Time from webhook arrival to its answer, for deliveries that reached the event log',
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2],
      registers,
    }),
    appendBatchSize: new Histogram({
      name: 'kasgate_event_append_batch_size',
      help: 'Events written per group commit',
      buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256],
      registers,
    }),
    connectedAgents: new Gauge({
      name: 'kasgate_agent_connections',
      help: 'Agent WebSocket connections open on this replica',
      registers,
    }),
    pushesDelivered: new Counter({
      name: 'kasgate_pushes_delivered_total',
      help: 'Event frames (push and artifact) written to agent sockets (live and replayed)',
      registers,
    }),
    framesRejected: new Counter({
      name: 'kasgate_frames_rejected_total',
      help: 'Agent frames rejected, by error code',
      labelNames: ['code'] as const,
      registers,
    }),
    fanoutLatency: new Histogram({
      name: 'kasgate_fanout_latency_seconds',
      help: 'Time from an event being stored to its frame written to every local subscriber',
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers,
    }),
    eventsReplayed: new Counter({
      name: 'kasgate_events_replayed_total',
      help: 'Event frames sent from the event log on subscribe (replay)',
      registers,
    }),
    resyncsSent: new Counter({
      name: 'kasgate_resyncs_sent_total',
      help: 'resync frames sent because a cursor was older than the retained log',
      registers,
    }),
    doorbellGapsRecovered: new Counter({
      name: 'kasgate_doorbell_gaps_recovered_total',
      help: 'Events this replica read from Postgres because their doorbell was missed or late',
      registers,
    }),
    slowConsumersClosed: new Counter({
      name: 'kasgate_slow_consumers_closed_total',
      help: 'Agent sockets closed because their send buffer went over the bound',
      registers,
    }),
    authFailures: new Counter({
      name: 'kasgate_agent_auth_failures_total',
      help: 'Agent connection attempts refused for a bad, revoked or deleted token',
      registers,
    }),
    statusObjectsRefused: new Counter({
      name: 'kasgate_status_objects_refused_total',
      help: 'Objects in status frames not stored because the agent is at KASGATE_MAX_STATUS_OBJECTS',
      registers,
    }),
    statusWriteDuration: new Histogram({
      name: 'kasgate_agent_writes_seconds',
      help: "Time of one write of agents' state (a batch of status objects and the deployments they move, or one statement of deliveries), pool wait included",
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers,
    }),
    statusWriteFailures: new Counter({
      name: 'kasgate_agent_write_failures_total',
      help: "Agents whose writes (deliveries, status objects) failed to commit; retried with backoff",
      registers,
    }),
    deploymentsFinished: new Counter({
      name: 'kasgate_deployments_finished_total',
      help: 'Deployments (event x agent x Kustomization or HelmRelease) reaching a final state, by state',
      labelNames: ['state'] as const,
      registers,
    }),
    pushToApplied: new Histogram({
      name: 'kasgate_push_to_applied_seconds',
      help: 'Time from the webhook reaching kasgate to Flux reporting the push applied (per deployment)',
      buckets: [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800],
      registers,
    }),
    gitlabRequests: new Counter({
      name: 'kasgate_gitlab_requests_total',
      help: 'Requests to the GitLab API by method and answer (status code, timeout, unanswered)',
      labelNames: ['method', 'status'] as const,
      registers,
    }),
    deployTokens: new Counter({
      name: 'kasgate_deploy_tokens_total',
      help: "Flux's deploy tokens by what happened to them: created (on GitLab), applied (by the agent), failed (the agent could not write the Secret), revoked (on GitLab)",
      labelNames: ['event'] as const,
      registers,
    }),
    configFileReads: new Counter({
      name: 'kasgate_config_file_reads_total',
      help: "Reads of agents' config files by outcome: ok, invalid (bad YAML, unknown key...), missing, unavailable (GitLab's trouble)",
      labelNames: ['outcome'] as const,
      registers,
    }),
    commitStatuses: new Counter({
      name: 'kasgate_commit_statuses_total',
      help: 'Commit status posts by state and outcome: posted, retried (429, 5xx, no answer: tried again later), rejected (other 4xx: never retried), expired',
      labelNames: ['state', 'outcome'] as const,
      registers,
    }),
    commitStatusesOwed: new Gauge({
      name: 'kasgate_commit_statuses_owed',
      help: 'Commit statuses waiting to be posted (all replicas), as this replica last counted',
      registers,
    }),
  };
}

export type Metrics = ReturnType<typeof createMetrics>;
