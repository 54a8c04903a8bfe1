/**
 * The agent's health endpoint and Prometheus metrics (on a Registry of its own, so that an
 * in-process gateway and agent never clash over metric names).
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Counter, Gauge, Registry } from 'prom-client';

export interface AgentMetrics {
  registry: Registry;
  connected: Gauge;
  eventsReceived: Counter<'type'>;
  reconcilesRequested: Counter<'kind' | 'mode'>;
  triggerFailures: Counter<'reason'>;
  managedSources: Gauge<'kind'>;
  statusObjects: Gauge<'kind'>;
  statusFrames: Counter<'full'>;
  statusTruncated: Gauge;
  credentialsApplied: Counter;
  credentialsFailures: Counter<'reason'>;
}

export function createAgentMetrics(): AgentMetrics {
  const registry = new Registry();
  const registers = [registry];
  return {
    registry,
    connected: new Gauge({
      name: 'kasgate_agent_connected',
      help: '1 while the agent holds an established connection to the gateway',
      registers,
    }),
    eventsReceived: new Counter({
      name: 'kasgate_agent_events_received_total',
      help: 'Events received from the gateway, by type (push, artifact); redeliveries of an event counted once',
      labelNames: ['type'] as const,
      registers,
    }),
    reconcilesRequested: new Counter({
      name: 'kasgate_agent_reconciles_requested_total',
      help: 'Reconciliations Flux was asked for and accepted (an annotation patch, or a Receiver call), by source kind and trigger mode',
      labelNames: ['kind', 'mode'] as const,
      registers,
    }),
    triggerFailures: new Counter({
      name: 'kasgate_agent_trigger_failures_total',
      help: 'Reconcile requests that failed for good (rejected: a 4xx; exhausted: retries used up; unavailable: Receiver not ready)',
      labelNames: ['reason'] as const,
      registers,
    }),
    managedSources: new Gauge({
      name: 'kasgate_agent_managed_sources',
      help: 'Flux sources on the GitLab instance (GitRepository) or its registry (OCIRepository) that the agent manages, by kind',
      labelNames: ['kind'] as const,
      registers,
    }),
    statusObjects: new Gauge({
      name: 'kasgate_agent_status_objects',
      help: 'Flux objects reported to the gateway on the current connection, by kind',
      labelNames: ['kind'] as const,
      registers,
    }),
    statusFrames: new Counter({
      name: 'kasgate_agent_status_frames_total',
      help: 'status frames sent to the gateway (full: a full set or one of its parts; otherwise changes)',
      labelNames: ['full'] as const,
      registers,
    }),
    statusTruncated: new Gauge({
      name: 'kasgate_agent_status_truncated',
      help: '1 while the agent knows more Flux objects than the gateway takes (limits.maxStatusObjects) and reports only that many',
      registers,
    }),
    credentialsApplied: new Counter({
      name: 'kasgate_agent_credentials_applied_total',
      help: 'credentials frames whose Secret the agent wrote in every namespace',
      registers,
    }),
    credentialsFailures: new Counter({
      name: 'kasgate_agent_credentials_failures_total',
      help: 'attempts to write a credentials Secret that failed (forbidden: no rights in a namespace; foreign: a Secret kasgate does not manage; invalid; error)',
      labelNames: ['reason'] as const,
      registers,
    }),
  };
}

export interface AgentStatus {
  ready: boolean;
  triggerMode: 'annotate' | 'receiver';
  fluxCrds: 'unknown' | 'found' | 'missing';
  /** The CRDs the agent waits for (`plural.group/version`), while fluxCrds is missing. */
  missingCrds: string[];
  sourcesSynced: boolean;
  gateway: 'connecting' | 'connected' | 'revoked' | 'stopped';
  managedSources: { GitRepository: number; OCIRepository: number };
}

export interface HealthServer {
  port: number;
  close(): Promise<void>;
}

export async function startHealthServer(
  host: string,
  port: number,
  metrics: AgentMetrics,
  status: () => AgentStatus,
): Promise<HealthServer> {
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') return reply(res, 405, { error: 'method not allowed' });
    if (path === '/healthz') return reply(res, 200, { status: 'ok' });
    if (path === '/readyz') {
      const current = status();
      return reply(res, current.ready ? 200 : 503, current);
    }
    if (path === '/metrics') {
      metrics.registry
        .metrics()
        .then((text) => {
          res.writeHead(200, { 'content-type': metrics.registry.contentType });
          res.end(text);
        })
        .catch(() => reply(res, 500, { error: 'metrics unavailable' }));
      return;
    }
    reply(res, 404, { error: 'not found' });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

function reply(res: http.ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}
