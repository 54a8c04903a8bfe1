/**
 * Presence: which agent connections are live, on which replica (in the style of GitLab's
 * agent_tracker). Each record expires on its own unless its replica refreshes it, so a dead
 * replica's connections disappear after the TTL.
 */
export interface ConnectionRecord {
  connectionId: string;
  agentId: string;
  agentName: string;
  replicaId: string;
  remoteAddress: string;
  connectedAt: string;
  lastHeartbeatAt: string;
  projects: string[];
}

export type RegisterResult = 'registered' | 'over_limit';

export interface Presence {
  /** Records a new connection unless the agent already holds `maxPerAgent` live ones. Rejects when the store is down. */
  register(record: ConnectionRecord, maxPerAgent: number): Promise<RegisterResult>;
  /** Rewrites a whole record (subscribe changed it, or an earlier write failed). */
  put(record: ConnectionRecord): Promise<void>;
  /** Heartbeat: rewrites the given records whole and extends their TTL. */
  refresh(records: ConnectionRecord[]): Promise<void>;
  remove(record: ConnectionRecord): Promise<void>;
  list(): Promise<ConnectionRecord[]>;
  listForAgent(agentId: string): Promise<ConnectionRecord[]>;
  ping(): Promise<void>;
  readonly kind: 'redis' | 'in-process';
}

/** One process, one replica: a map with the same expiry semantics. */
export function createInProcessPresence(ttlMs: number, now: () => number = Date.now): Presence {
  const records = new Map<string, { record: ConnectionRecord; expiresAt: number }>();
  const live = () => {
    const t = now();
    for (const [id, entry] of records) if (entry.expiresAt <= t) records.delete(id);
    return [...records.values()].map((e) => e.record);
  };
  return {
    kind: 'in-process',
    async register(record, maxPerAgent) {
      if (live().filter((r) => r.agentId === record.agentId).length >= maxPerAgent) return 'over_limit';
      records.set(record.connectionId, { record: { ...record }, expiresAt: now() + ttlMs });
      return 'registered';
    },
    async put(record) {
      records.set(record.connectionId, { record: { ...record }, expiresAt: now() + ttlMs });
    },
    async refresh(list) {
      for (const record of list) records.set(record.connectionId, { record: { ...record }, expiresAt: now() + ttlMs });
    },
    async remove(record) {
      records.delete(record.connectionId);
    },
    async list() {
      return live();
    },
    async listForAgent(agentId) {
      return live().filter((r) => r.agentId === agentId);
    },
    async ping() {},
  };
}
