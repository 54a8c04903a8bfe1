/**
 * The per-replica hub: the index project → local sessions, so an event costs O(subscribers of that
 * project), plus the replica-wide chores on those sessions (heartbeat, presence refresh,
 * revocation, drain).
 */
import type { Logger } from 'pino';
import { buildAccess, isWellFormedPath, VISIBILITY_PUBLIC, normalizePath } from '../agents/access-rule.js';
import { stableJson } from '../agents/config-file/parse.js';
import type { AgentStore } from '../agents/agent-store.js';
import type { TokenStore } from '../agents/token-store.js';
import type { DeliveryRecorder } from '../deployments/deliveries.js';
import type { StoredEvent } from '../events/event.js';
import type { Metrics } from '../metrics.js';
import { CloseCode } from '../protocol/kasgate-v1.js';
import type { AgentSession } from './agent-session.js';
import { frameBytes } from './frames.js';
import type { Presence } from './presence.js';

export interface HubDeps {
  deliveries: Pick<DeliveryRecorder, 'record'>;
  agents: Pick<AgentStore, 'accessInputs'>;
  tokens: Pick<TokenStore, 'activeAmong'>;
  presence: Presence;
  metrics: Metrics;
  log: Logger;
  heartbeatSeconds: number;
}

/**
 * Every this many heartbeats (a minute by default), the access and tokens of every local agent are
 * read again from Postgres: a grant change, agent deletion or token revocation whose control
 * message was lost (Redis outage) still lands.
 */
const RECONCILE_EVERY_BEATS = 2;

export function createHub(deps: HubDeps) {
  const byProject = new Map<string, Set<AgentSession>>();
  const byAgent = new Map<string, Set<AgentSession>>();
  const sessions = new Set<AgentSession>();
  let accepting = true;
  /** Per agent, the sequence number of the latest access read started: an older read never overwrites a newer one. */
  const latestAccessRead = new Map<string, number>();
  let accessReads = 0;
  let beats = 0;

  /** Reads the agents' access and applies it to their local sessions; a deleted agent's sockets close. */
  async function reloadAccess(agentIds: string[]): Promise<void> {
    const started = new Map(agentIds.map((id) => [id, ++accessReads]));
    for (const [id, seq] of started) latestAccessRead.set(id, seq);
    if (agentIds.length === 0) return;
    const inputs = await deps.agents.accessInputs(agentIds);
    for (const [agentId, seq] of started) {
      const local = byAgent.get(agentId);
      if (!local || latestAccessRead.get(agentId) !== seq) continue;
      const input = inputs.get(agentId);
      if (!input) {
        for (const session of local) session.close(CloseCode.Revoked, 'agent deleted');
        continue;
      }
      const access = buildAccess(agentId, input.configProject, input.grants, input.fluxAccess);
      const config = stableJson(input.config);
      for (const session of local) {
        session.setAccess(access);
        // A config frame lost with the bus (or a change between the token check and the hello) lands here.
        if (session.sentConfig !== undefined && session.sentConfig !== config) {
          session.send({ type: 'config', config: input.config });
          session.sentConfig = config;
        }
      }
    }
  }

  /** Closes local sessions whose token was revoked. */
  async function recheckTokens(): Promise<void> {
    // Only the sessions whose tokens were asked about: one that joined meanwhile was not checked.
    const checked = [...sessions];
    const active = await deps.tokens.activeAmong([...new Set(checked.map((s) => s.id.tokenId))]);
    for (const session of checked) if (!active.has(session.id.tokenId)) session.close(CloseCode.Revoked, 'token revoked');
  }

  function reconcile(): Promise<void> {
    return Promise.all([reloadAccess([...byAgent.keys()]), recheckTokens()]).then(
      () => undefined,
      (err: Error) => deps.log.warn({ err: err.message }, 'access check of local agents failed; retrying later'),
    );
  }

  function unindex(session: AgentSession): void {
    for (const path of session.projects.keys()) {
      const set = byProject.get(path);
      set?.delete(session);
      if (set?.size === 0) byProject.delete(path);
    }
  }

  function heartbeat(): void {
    const now = Date.now();
    const deadline = 2 * deps.heartbeatSeconds * 1000;
    for (const session of sessions) {
      if (now - session.lastPongAt > deadline) session.close(CloseCode.HeartbeatMissed, 'heartbeat missed');
      else session.ping();
    }
    const records = [...sessions].filter((s) => s.isOpen).map((s) => s.record());
    deps.presence.refresh(records).catch((err: Error) => {
      deps.log.warn({ err: err.message, connections: records.length }, 'presence refresh failed; retrying at the next heartbeat');
    });
    if (++beats % RECONCILE_EVERY_BEATS === 0) void reconcile();
  }
  const heartbeatTimer = setInterval(heartbeat, deps.heartbeatSeconds * 1000);
  heartbeatTimer.unref();

  return {
    get accepting(): boolean {
      return accepting;
    },

    get size(): number {
      return sessions.size;
    },

    add(session: AgentSession): void {
      sessions.add(session);
      let mine = byAgent.get(session.agentId);
      if (!mine) byAgent.set(session.agentId, (mine = new Set()));
      mine.add(session);
      deps.metrics.connectedAgents.set(sessions.size);
    },

    remove(session: AgentSession): void {
      if (!sessions.delete(session)) return;
      unindex(session);
      const mine = byAgent.get(session.agentId);
      mine?.delete(session);
      if (mine?.size === 0) {
        byAgent.delete(session.agentId);
        latestAccessRead.delete(session.agentId);
      }
      deps.metrics.connectedAgents.set(sessions.size);
    },

    localCount(agentId: string): number {
      return byAgent.get(agentId)?.size ?? 0;
    },

    /** The agent's connections on this replica. */
    localSessions(agentId: string): AgentSession[] {
      return [...(byAgent.get(agentId) ?? [])];
    },

    /** Re-indexes a session under its new subscription (see AgentSession.setProjects). */
    subscribe(session: AgentSession, paths: string[], startReplay: boolean): string[] {
      unindex(session);
      const lower = session.setProjects(paths, startReplay);
      if (!sessions.has(session)) return lower;
      for (const path of lower) {
        let set = byProject.get(path);
        if (!set) byProject.set(path, (set = new Set()));
        set.add(session);
      }
      return lower;
    },

    /** Writes one event to every local session that may see it. The frame is serialized once. */
    dispatch(event: StoredEvent, storedAt?: number): void {
      const path = normalizePath(event.projectPath);
      const subscribers = byProject.get(path);
      if (!subscribers || !isWellFormedPath(path)) return;
      const frame = frameBytes(event);
      const isPublic = event.visibility === VISIBILITY_PUBLIC;
      const id = BigInt(event.id);
      const agentIds: string[] = [];
      for (const session of subscribers) {
        if (session.offer(event, id, frame, path, isPublic)) agentIds.push(session.agentId);
      }
      const written = agentIds.length;
      deps.deliveries.record(event.id, agentIds);
      if (written > 0) {
        deps.metrics.pushesDelivered.inc(written);
        if (storedAt !== undefined) deps.metrics.fanoutLatency.observe(Math.max(0, Date.now() - storedAt) / 1000);
      }
    },

    /** Closes the agent's sockets here (all of them, or those on one token) with 4401. */
    revoke(agentId: string, tokenId?: string): number {
      let closed = 0;
      for (const session of byAgent.get(agentId) ?? []) {
        if (tokenId === undefined || session.id.tokenId === tokenId) {
          session.close(CloseCode.Revoked, tokenId ? 'token revoked' : 'agent deleted');
          closed++;
        }
      }
      return closed;
    },

    /** Sends a `config` frame on each of the agent's local connections; returns how many. */
    sendConfig(agentId: string, config: Record<string, unknown>): number {
      // An access read already under way may carry the config from before: it must not undo this one.
      if (byAgent.has(agentId)) latestAccessRead.set(agentId, ++accessReads);
      let sent = 0;
      const json = stableJson(config);
      for (const session of byAgent.get(agentId) ?? []) {
        if (!session.isOpen) continue;
        if (session.sentConfig === json) continue;
        session.send({ type: 'config', config });
        session.sentConfig = json;
        sent++;
      }
      return sent;
    },

    /** Grants or config project changed somewhere (or a session just joined): re-read the agent's access. */
    async refreshAccess(agentId: string): Promise<void> {
      if (!byAgent.has(agentId)) return;
      await reloadAccess([agentId]);
    },

    /** Re-reads the access of every agent with a local session (periodically, and when messages may have been lost). */
    reconcile,

    list(): AgentSession[] {
      return [...sessions];
    },

    /**
     * Stops accepting, then closes every socket with 1012, spread over the window so the
     * agents' reconnects don't land on the other replicas all at once.
     */
    async drain(windowMs: number): Promise<void> {
      accepting = false;
      const all = [...sessions];
      if (all.length === 0) return;
      const step = windowMs / all.length;
      await Promise.all(
        all.map(
          (session, i) =>
            new Promise<void>((resolve) => {
              setTimeout(() => {
                session.close(CloseCode.ReplicaShutdown, 'replica shutting down; reconnect');
                resolve();
              }, i * step);
            }),
        ),
      );
    },

    stop(): void {
      clearInterval(heartbeatTimer);
      for (const session of sessions) session.close(CloseCode.ReplicaShutdown, 'replica shutting down; reconnect');
    },
  };
}

export type Hub = ReturnType<typeof createHub>;
