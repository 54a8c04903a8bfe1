/**
 * Control messages between replicas: revocations and access changes. Published on the bus so
 * every replica (this one included) applies them; if the bus is down, applied here at least.
 * The other replicas' periodic check (Hub.reconcile, also run when their bus reconnects) then
 * closes revoked and deleted agents' sockets and applies grant changes there.
 */
import type { Logger } from 'pino';
import type { Bus, BusMessage } from './bus.js';
import type { Hub } from './hub.js';

export type ControlMessage = Extract<BusMessage, { type: 'revoke' | 'agent_changed' | 'agent_config' }>;

export const isControlMessage = (message: BusMessage): message is ControlMessage =>
  message.type === 'revoke' || message.type === 'agent_changed' || message.type === 'agent_config';

export function applyControl(hub: Hub, message: ControlMessage, log: Logger): void {
  if (message.type === 'revoke') {
    const closed = hub.revoke(message.agentId, message.tokenId);
    if (closed > 0) log.info({ agentId: message.agentId, tokenId: message.tokenId, closed }, 'closed revoked agent sockets');
  } else if (message.type === 'agent_config') {
    const sent = hub.sendConfig(message.agentId, message.config);
    if (sent > 0) log.info({ agentId: message.agentId, connections: sent }, 'sent the changed config to the agent');
  } else {
    hub.refreshAccess(message.agentId).catch((err: Error) => log.warn({ err: err.message }, 'could not refresh agent access'));
  }
}

export async function sendControl(deps: { bus: Bus; hub: Hub; log: Logger }, message: ControlMessage): Promise<void> {
  try {
    await deps.bus.publish(message);
  } catch (err) {
    deps.log.warn({ err: (err as Error).message, type: message.type }, 'bus unavailable; applying the control message on this replica only');
    applyControl(deps.hub, message, deps.log);
  }
}
