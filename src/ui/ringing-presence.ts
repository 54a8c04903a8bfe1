/** Presence that also tells someone when a connection comes, changes its subscription, or goes. */
import type { ConnectionRecord, Presence } from '../fanout/presence.js';

export function ringingPresence(inner: Presence, ring: (record: ConnectionRecord) => void): Presence {
  return {
    kind: inner.kind,
    async register(record, maxPerAgent) {
      const result = await inner.register(record, maxPerAgent);
      if (result === 'registered') ring(record);
      return result;
    },
    async put(record) {
      await inner.put(record);
      ring(record);
    },
    refresh: (records) => inner.refresh(records),
    async remove(record) {
      await inner.remove(record);
      ring(record);
    },
    list: () => inner.list(),
    listForAgent: (agentId) => inner.listForAgent(agentId),
    ping: () => inner.ping(),
  };
}
