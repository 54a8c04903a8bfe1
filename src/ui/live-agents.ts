/**
 * The status page's agent rows, live: presence changes rung on the bus (one small message per
 * connection that comes, changes its subscription, or goes), coalesced, read once per replica and
 * rendered once for every browser that shows the agent. A replica that dies removes nothing (its
 * records expire), so while browsers watch, a full presence listing is compared every 30 s.
 */
import type { Logger } from 'pino';
import type { Bus, BusMessage } from '../fanout/bus.js';
import type { Presence } from '../fanout/presence.js';
import type { LiveClient, LiveFrame, LiveView } from './live-feed.js';
import type { AgentChange, ChangeEntry } from './live-memory.js';
import { ringingPresence } from './ringing-presence.js';
import { agentLive, agentRow, type AgentStateView } from './templates/agents.js';

type LiveBusMessage = Extract<BusMessage, { type: 'live' }>;
type AgentFrames = NonNullable<ChangeEntry['frames']>;

export function createLiveAgents(deps: {
  bus: Bus;
  presence: Presence;
  log: Logger;
  clients: ReadonlySet<LiveClient>;
  frame(event: string, data: unknown): LiveFrame;
  remember(key: string, entry: ChangeEntry): void;
  broadcast(pick: (client: LiveClient) => LiveFrame | undefined): void;
  /** Changes this close together go out as one. */
  coalesceMs: number;
}) {
  const lastConnected = new Map<string, string>();

  async function agentView(change: AgentChange): Promise<AgentStateView> {
    const connections = await deps.presence.listForAgent(change.agentId);
    const latest = [change.connectedAt, lastConnected.get(change.agentId), ...connections.map((c) => c.connectedAt)]
      .filter((t): t is string => !!t)
      .sort()
      .at(-1);
    if (latest) lastConnected.set(change.agentId, latest);
    return { id: change.agentId, name: connections[0]?.agentName ?? change.agentName, connections, lastConnectedAt: latest ?? null };
  }

  async function renderAgent(entry: ChangeEntry & { change: AgentChange }): Promise<AgentFrames> {
    if (entry.frames) return entry.frames;
    const view = await agentView(entry.change);
    const connected = view.connections.length > 0;
    entry.frames = {
      overview: deps.frame('agent-row', {
        id: view.id,
        html: agentRow(view).value,
        announce: `Agent ${view.name} ${connected ? 'connected' : 'disconnected'}`,
      }),
      agent: deps.frame('agent-live', { id: view.id, html: agentLive(view).value, announce: `${connected ? 'Connected' : 'Disconnected'}` }),
    };
    return entry.frames;
  }

  const pendingAgents = new Map<string, AgentChange>();
  let agentTimer: NodeJS.Timeout | undefined;
  function agentChanged(change: AgentChange): void {
    pendingAgents.set(change.agentId, change);
    agentTimer ??= setTimeout(() => void flushAgents(), deps.coalesceMs);
  }
  async function flushAgents(): Promise<void> {
    agentTimer = undefined;
    const batch = [...pendingAgents.values()];
    pendingAgents.clear();
    for (const change of batch) {
      const key = `agent:${change.agentId}`;
      const entry: ChangeEntry & { change: AgentChange } = { at: Date.now(), key, change };
      deps.remember(key, entry);
      if (!wantsAgent(change.agentId)) continue;
      try {
        const frames = await renderAgent(entry);
        deps.broadcast((c) => agentFrameFor(c.view, change.agentId, frames));
      } catch (err) {
        entry.frames = undefined;
        deps.log.debug({ err: (err as Error).message }, 'status page: could not read presence for a live update');
      }
    }
  }
  const wantsAgent = (agentId: string) =>
    [...deps.clients].some((c) => (c.view.view === 'overview' && c.view.agentIds.has(agentId)) || (c.view.view === 'agent' && c.view.agentId === agentId));
  function agentFrameFor(view: LiveView, agentId: string, frames: AgentFrames): LiveFrame | undefined {
    if (view.view === 'overview' && view.agentIds.has(agentId)) return frames.overview;
    if (view.view === 'agent' && view.agentId === agentId) return frames.agent;
    return undefined;
  }

  /** Presence that also rings the bus when a connection comes, changes its subscription, or goes. */
  function observePresence(inner: Presence): Presence {
    return ringingPresence(inner, (record) => {
      const message: LiveBusMessage = { type: 'live', topic: 'agent', agentId: record.agentId, agentName: record.agentName, connectedAt: record.connectedAt };
      deps.bus.publish(message).catch(() => agentChanged(message));
    });
  }

  /** Agents whose records expired (their replica died) remove nothing: compare listings while someone watches. */
  let snapshot: Map<string, { name: string; ids: string; connectedAt: string }> | undefined;
  async function sweepPresence(): Promise<void> {
    if (deps.clients.size === 0 || deps.presence.kind !== 'redis') {
      snapshot = undefined;
      return;
    }
    const now = new Map<string, { name: string; ids: string[]; connectedAt: string }>();
    for (const r of await deps.presence.list()) {
      const a = now.get(r.agentId) ?? { name: r.agentName, ids: [], connectedAt: r.connectedAt };
      a.ids.push(r.connectionId);
      now.set(r.agentId, a);
    }
    const next = new Map([...now].map(([id, a]) => [id, { name: a.name, ids: a.ids.sort().join(','), connectedAt: a.connectedAt }]));
    if (snapshot) {
      for (const [id, before] of snapshot) {
        if (next.get(id)?.ids !== before.ids) agentChanged({ type: 'live', topic: 'agent', agentId: id, agentName: before.name, connectedAt: before.connectedAt });
      }
    }
    snapshot = next;
  }

  return {
    /** A connection of this agent came, changed or went (on any replica). */
    changed: agentChanged,
    /** The agent's frames for a change, rendered once (a reconnecting browser's replay reuses them). */
    render: renderAgent,
    frameFor: agentFrameFor,
    observePresence,
    sweep: sweepPresence,
    close(): void {
      if (agentTimer) clearTimeout(agentTimer);
    },
  };
}

export type LiveAgents = ReturnType<typeof createLiveAgents>;
