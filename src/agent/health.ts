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
  pushesReceived: Counter;
  receiversTriggered: Counter;
  triggerFailures: Counter<'reason'>;
  managedRepositories: Gauge;
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
    pushesReceived: new Counter({
      name: 'kasgate_agent_pushes_received_total',
      help: 'Push notifications received from the gateway (redeliveries of an event counted once)',
      registers,
    }),
    receiversTriggered: new Counter({
      name: 'kasgate_agent_receivers_triggered_total',
      help: 'Flux Receiver calls that succeeded',
      registers,
    }),
    triggerFailures: new Counter({
      name: 'kasgate_agent_trigger_failures_total',
      help: 'Flux Receiver triggers that failed for good (rejected: a 4xx; exhausted: retries used up; unavailable: Receiver not ready)',
      labelNames: ['reason'] as const,
      registers,
    }),
    managedRepositories: new Gauge({
      name: 'kasgate_agent_managed_gitrepositories',
      help: 'GitRepositories on the GitLab instance for which the agent manages a Receiver',
      registers,
    }),
  };
}

export interface AgentStatus {
  ready: boolean;
  fluxCrds: 'unknown' | 'found' | 'missing';
  gitRepositoriesSynced: boolean;
  gateway: 'connecting' | 'connected' | 'revoked' | 'stopped';
  managedRepositories: number;
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
