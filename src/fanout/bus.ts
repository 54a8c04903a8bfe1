/**
 * The bus between replicas: the fan-out doorbell ("events were appended") and control messages
 * (revocations, grant changes). Redis pub/sub with replicas; an in-process emitter in embedded
 * mode. It is a doorbell, never the log: a lost message is recovered from Postgres.
 */
import type { AppendedBatch } from '../events/event-log.js';

export type BusMessage =
  /** `origin`: set by the Redis bus, so that it knows its own doorbells when they come back (redis-bus.ts). */
  | ({ type: 'events'; origin?: string; storedAt: number } & AppendedBatch)
  /** Close the agent's sockets with 4401: all of them, or only those on one token. */
  | { type: 'revoke'; agentId: string; tokenId?: string }
  /** The agent's grants or config project changed: recompute its access. */
  | { type: 'agent_changed'; agentId: string }
  /** Deploy tokens wait for this agent (src/credentials): replicas with its connections send them. Never the token itself. */
  | { type: 'credentials_due'; agentId: string }
  /** The agent's effective config changed (admin API or its config file): send it a `config` frame on every live connection. */
  | { type: 'agent_config'; agentId: string; config: Record<string, unknown> }
  /** For the status page's live feed (src/ui/live-feed.ts): an agent's connections changed somewhere. */
  | { type: 'live'; topic: 'agent'; agentId: string; agentName: string; connectedAt: string }
  /** For the status page's live feed: deliveries or deployments of these events changed (`deliveriesOnly`: only who got them). */
  | { type: 'live'; topic: 'deployments'; eventIds: string[]; deliveriesOnly?: boolean };

export interface Bus {
  /** Resolves once handed to the transport; rejects when it is down (the sweep catches up). */
  publish(message: BusMessage): Promise<void>;
  onMessage(handler: (message: BusMessage) => void): void;
  /** Called after the transport comes back from an outage, when messages may have been missed. */
  onReconnect(handler: () => void): void;
  readonly kind: 'redis' | 'in-process';
  /** Subscribed, so that other replicas' doorbells reach this one (always, in-process). */
  readonly joined: boolean;
  close(): Promise<void>;
}

export function createInProcessBus(): Bus {
  const handlers: ((message: BusMessage) => void)[] = [];
  return {
    kind: 'in-process',
    joined: true,
    async publish(message) {
      // Asynchronous like a real transport, so publishers never re-enter their subscribers.
      queueMicrotask(() => {
        for (const handler of handlers) handler(message);
      });
    },
    onMessage(handler) {
      handlers.push(handler);
    },
    onReconnect() {},
    async close() {
      handlers.length = 0;
    },
  };
}
