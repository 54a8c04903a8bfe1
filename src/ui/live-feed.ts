/**
 * The status page's live feed: one per replica, fanned out to every browser on it over
 * server-sent events. It is fed by what the gateway already knows, never by polling per browser:
 *
 * - events: the dispatcher hands every event to this replica's hub exactly once, in id order
 *   (gaps caught up from Postgres); the feed sits beside the hub (`dispatchingTo`). How many
 *   agents each reached is read when its deliveries are written (below).
 * - connections (live-agents.ts): presence changes made on this replica are rung on the bus, so
 *   every replica hears of every change once, whatever the number of browsers, reads that agent's
 *   presence once and renders its row once.
 * - deliveries and deployments: the deployments module calls `deploymentsChanged(eventIds)` once
 *   it has written an event's deliveries (within 25 ms of the frames) or changed its deployments,
 *   which is rung on the bus the same way; the feed then reads those events' delivery counts and
 *   deployments once per replica.
 *
 * A browser that reconnects (EventSource sends Last-Event-ID) gets what it missed from a bounded
 * memory of recent events and changes; one that missed more than that is told to reload.
 */
import type { Logger } from 'pino';
import type { StoredEvent } from '../events/event.js';
import type { Bus, BusMessage } from '../fanout/bus.js';
import type { Hub } from '../fanout/hub.js';
import type { Presence } from '../fanout/presence.js';
import type { ClusterView, DeploymentView } from './cluster-view.js';
import type { StatusQueries } from './status-queries.js';
import { deliveredLong, deliveredText, deploymentsCell, eventRow, eventTimeline, latencyCell, type EventView } from './templates/events.js';
import { kindLabel } from './format.js';
import { createLiveAgents } from './live-agents.js';
import { LiveMemory, type AgentChange, type ChangeEntry, type EventEntry } from './live-memory.js';

type LiveBusMessage = Extract<BusMessage, { type: 'live' }>;

/** What a browser's page shows, so that it is sent only what it can use. */
export type LiveView =
  | { view: 'overview'; newEvents: boolean; search?: string; agentIds: Set<string> }
  | { view: 'agent'; agentId: string }
  | { view: 'event'; eventId: string };

export interface LiveFrame {
  id: string;
  event: string;
  /** JSON, serialized once for every browser it goes to. */
  data: string;
}

export interface LiveClient {
  view: LiveView;
  sessionId: string;
  /** When the session ends on its own (ms since the epoch). */
  expiresAt: number;
  /** Whether the session still exists (it may have been signed out on another replica). */
  sessionAlive(): Promise<boolean>;
  /** False once the browser is gone. */
  send(frame: LiveFrame): boolean;
  /** Bytes written but not yet taken by the browser. */
  backlog(): number;
  close(): void;
}

export interface LiveFeedDeps {
  bus: Bus;
  presence: Presence;
  queries: Pick<StatusQueries, 'deliveredCounts' | 'event'>;
  /** Read at each use: the composition root may swap it (the cluster-state module, or a test). */
  cluster: () => ClusterView;
  log: Logger;
}

/** A page's render time and its browser's first connection can be this far apart, and clocks too. */
const REPLAY_MARGIN_MS = 5000;
const COALESCE_MS = 100;
const TICK_MS = 25_000;
const SWEEP_MS = 30_000;
const SESSION_CHECK_MS = 30_000;
/** A browser that lets this much pile up is not reading: it is dropped (it reconnects and catches up). */
const MAX_BACKLOG_BYTES = 1 << 20;

const json = (value: unknown) => JSON.stringify(value);

export function createLiveFeed(deps: LiveFeedDeps) {
  const { log } = deps;
  const clients = new Set<LiveClient>();
  const memory = new LiveMemory(REPLAY_MARGIN_MS);
  let closed = false;

  /** Browsers still being sent what they missed: live frames wait behind that, so older never overwrites newer. */
  const joining = new Map<LiveClient, LiveFrame[]>();

  const position = () => `${memory.highest}-${Date.now()}`;
  const frame = (event: string, data: unknown): LiveFrame => ({ id: '', event, data: json(data) });

  /** Each frame carries the feed's position when sent: the browser's Last-Event-ID on reconnect. */
  function deliver(client: LiveClient, f: LiveFrame): void {
    const queue = joining.get(client);
    if (queue) queue.push(f);
    else write(client, f);
  }
  function write(client: LiveClient, f: LiveFrame): void {
    if (client.backlog() > MAX_BACKLOG_BYTES || !client.send({ ...f, id: position() })) drop(client);
  }
  function drop(client: LiveClient): void {
    joining.delete(client);
    if (!clients.delete(client)) return;
    client.close();
  }
  function broadcast(pick: (client: LiveClient) => LiveFrame | undefined): void {
    for (const client of clients) {
      const f = pick(client);
      if (f) deliver(client, f);
    }
  }

  // --- events -------------------------------------------------------------------------------

  const matches = (view: LiveView, e: StoredEvent) =>
    view.view === 'overview' && view.newEvents && (!view.search || e.projectPath.toLowerCase().includes(view.search.toLowerCase()));

  function rowOf(entry: EventEntry): string {
    const view: EventView = { ...entry.event, deliveredCount: entry.deliveredCount };
    entry.row ??= eventRow(view, entry.deployments).value;
    return entry.row;
  }

  function eventDispatched(event: StoredEvent): void {
    const entry = memory.addEvent(event);
    if (!entry || clients.size === 0) return;
    const f = frame('event-row', { id: event.id, html: rowOf(entry), announce: `New ${kindLabel(event)} to ${event.projectPath}` });
    broadcast((c) => (matches(c.view, event) ? f : undefined));
  }

  const onEventPage = (view: LiveView, id: string) => view.view === 'event' && view.eventId === id;
  const watched = (id: string) => [...clients].some((c) => onEventPage(c.view, id));

  /** Agent counts of events whose deliveries were just written, for the pages that show them. */
  async function refreshCounts(ids: string[]): Promise<void> {
    const shown = [...clients].some((c) => c.view.view === 'overview') ? ids : ids.filter(watched);
    if (shown.length === 0) return;
    let counts: Map<string, number>;
    try {
      counts = await deps.queries.deliveredCounts(shown);
    } catch (err) {
      // Their deployments still go out; the next deliveries of these events bring the counts.
      log.debug({ err: (err as Error).message }, 'status page: could not read delivery counts for a live update');
      return;
    }
    for (const [id, count] of counts) {
      const entry = memory.event(id);
      if (entry) {
        if (entry.deliveredCount === count) continue;
        entry.deliveredCount = count;
        entry.row = undefined;
      }
      const f = frame('delivered', { id, count, text: deliveredText(count), long: deliveredLong(count) });
      broadcast((c) => (c.view.view === 'overview' || onEventPage(c.view, id) ? f : undefined));
    }
  }

  // --- agents (live-agents.ts) ------------------------------------------------------------

  const remember = (key: string, entry: ChangeEntry) => memory.remember(key, entry);
  const agents = createLiveAgents({ bus: deps.bus, presence: deps.presence, log, clients, frame, remember, broadcast, coalesceMs: COALESCE_MS });

  // --- deployments --------------------------------------------------------------------------

  const pendingDeployments = new Set<string>();
  /** Events that only got deliveries: nothing on the overview changes, only their event pages. */
  const pendingDeliveries = new Set<string>();
  let deploymentTimer: NodeJS.Timeout | undefined;
  async function flushDeployments(): Promise<void> {
    deploymentTimer = undefined;
    const ids = [...pendingDeployments];
    const delivered = [...pendingDeliveries].filter((id) => !pendingDeployments.has(id));
    const counted = [...new Set([...pendingDeliveries, ...pendingDeployments])];
    pendingDeployments.clear();
    pendingDeliveries.clear();
    try {
      await refreshCounts(counted);
      for (const id of delivered) {
        const change: ChangeEntry = { at: Date.now(), key: `deliver:${id}`, change: { topic: 'deliveries', eventId: id } };
        remember(change.key, change);
        if (!watched(id)) continue;
        const f = await eventLiveFrame(id);
        if (f) broadcast((c) => (onEventPage(c.view, id) ? f : undefined));
      }
      if (ids.length === 0) return;
      const byEvent = await deps.cluster().deploymentsOf(ids);
      for (const id of ids) {
        const deployments = byEvent.get(id) ?? [];
        const entry = memory.event(id);
        if (entry) {
          entry.deployments = deployments;
          entry.row = undefined;
        }
        const key = `deploy:${id}`;
        const change: ChangeEntry = { at: Date.now(), key, change: { topic: 'deployments', eventId: id } };
        change.frames = {
          overview: frame('deployments', {
            id,
            deployments: deploymentsCell(deployments).value,
            latency: latencyCell(deployments).value,
          }),
        };
        remember(key, change);
        broadcast((c) => (c.view.view === 'overview' ? change.frames!.overview : undefined));
        if (watched(id)) {
          const f = await eventLiveFrame(id, deployments);
          if (f) {
            change.frames.event = f;
            broadcast((c) => (onEventPage(c.view, id) ? f : undefined));
          }
        }
      }
    } catch (err) {
      log.debug({ err: (err as Error).message }, 'status page: could not read deployments for a live update');
    }
  }

  async function eventLiveFrame(id: string, deployments?: DeploymentView[]): Promise<LiveFrame | undefined> {
    const event = await deps.queries.event(id);
    if (!event) return undefined;
    // Deployments read before deliveries (deployment-store.ts forEvent says why): those passed in were.
    const state = deployments
      ? { deployments, deliveries: await deps.cluster().deliveriesOf(id) }
      : await deps.cluster().eventDeployments(id);
    return frame('event-live', { id, html: eventTimeline(event, state.deliveries, state.deployments).value });
  }

  // --- the bus ------------------------------------------------------------------------------

  function onBus(message: LiveBusMessage): void {
    if (message.topic === 'agent') agents.changed(message);
    else {
      for (const id of message.eventIds) (message.deliveriesOnly ? pendingDeliveries : pendingDeployments).add(id);
      deploymentTimer ??= setTimeout(() => void flushDeployments(), COALESCE_MS);
    }
  }
  deps.bus.onMessage((message) => {
    if (message.type === 'live') onBus(message);
  });

  // --- browsers -----------------------------------------------------------------------------

  /** Parses a position given back by a browser (`<event id>-<ms>`), or undefined. */
  function parsePosition(text: string | undefined): { since: bigint; at: number } | undefined {
    const m = /^(\d{1,19})-(\d{1,15})$/.exec(text ?? '');
    return m ? { since: BigInt(m[1]!), at: Number(m[2]) } : undefined;
  }

  /** What the browser missed since `from`, or 'resync' when this replica no longer knows. */
  async function missed(client: LiveClient, from: { since: bigint; at: number }): Promise<LiveFrame[] | 'resync'> {
    if (!memory.covers(from)) return 'resync';
    const out: LiveFrame[] = [];
    const view = client.view;
    const newer = memory.eventsAfter(from.since);
    if (newer.length > 0) {
      const counts = await deps.queries.deliveredCounts(newer.map((e) => e.event.id)).catch(() => new Map<string, number>());
      for (const entry of newer) {
        const count = counts.get(entry.event.id);
        if (count !== undefined && count !== entry.deliveredCount) {
          entry.deliveredCount = count;
          entry.row = undefined;
        }
        if (matches(view, entry.event)) out.push(frame('event-row', { id: entry.event.id, html: rowOf(entry) }));
      }
    }
    let eventChanged = view.view === 'event' && newer.length > 0;
    for (const entry of memory.changesNow()) {
      if (entry.at < from.at - REPLAY_MARGIN_MS) continue;
      if (entry.change.topic === 'agent') {
        const frames = await agents.render(entry as ChangeEntry & { change: AgentChange });
        const f = agents.frameFor(view, entry.change.agentId, frames);
        if (f) out.push(f);
      } else if (view.view === 'overview' && entry.frames?.overview) {
        out.push(entry.frames.overview);
      } else if (view.view === 'event' && entry.change.eventId === view.eventId) {
        eventChanged = true;
      }
    }
    if (eventChanged && view.view === 'event') {
      const f = await eventLiveFrame(view.eventId);
      if (f) out.push(f);
    }
    return out;
  }

  const tick = setInterval(() => {
    const now = Date.now();
    for (const client of clients) {
      if (client.expiresAt <= now) endClient(client, 'expired');
      else deliver(client, frame('tick', {}));
    }
  }, TICK_MS);
  tick.unref();
  const sweep = setInterval(() => {
    agents.sweep().catch((err: Error) => log.debug({ err: err.message }, 'status page: presence sweep failed'));
  }, SWEEP_MS);
  sweep.unref();
  const sessionCheck = setInterval(() => {
    void (async () => {
      const bySession = new Map<string, LiveClient[]>();
      for (const c of clients) bySession.set(c.sessionId, [...(bySession.get(c.sessionId) ?? []), c]);
      for (const list of bySession.values()) {
        const alive = await list[0]!.sessionAlive().catch(() => true);
        if (!alive) for (const c of list) endClient(c, 'signed_out');
      }
    })();
  }, SESSION_CHECK_MS);
  sessionCheck.unref();

  function endClient(client: LiveClient, reason: 'signed_out' | 'expired' | 'shutdown'): void {
    if (!clients.has(client)) return;
    client.send({ ...frame(reason === 'shutdown' ? 'bye' : 'signed-out', { reason }), id: position() });
    drop(client);
  }

  return {
    /** Beside the hub: every event the dispatcher hands it reaches the page too. */
    dispatchingTo(hub: Pick<Hub, 'dispatch'>): Pick<Hub, 'dispatch'> {
      return {
        dispatch(event, storedAt) {
          hub.dispatch(event, storedAt);
          eventDispatched(event);
        },
      };
    },

    observePresence: agents.observePresence,

    /** Where the feed stands: the page puts this in its live URL, so that nothing falls between render and connect. */
    position,

    /** The dispatcher's start: events up to here were never the feed's to show. */
    startAfter(eventId: string): void {
      memory.startAfter(eventId);
    },

    /**
     * For the cluster-state module: deliveries or deployments of these events changed (on any
     * replica). `deliveriesOnly`: no deployment did, so nothing to read for the overview.
     */
    deploymentsChanged(eventIds: string[], deliveriesOnly = false): void {
      if (eventIds.length === 0) return;
      const message: LiveBusMessage = { type: 'live', topic: 'deployments', eventIds, ...(deliveriesOnly ? { deliveriesOnly } : {}) };
      deps.bus.publish(message).catch(() => onBus(message));
    },

    parsePosition,

    /** Adds a browser: first what it missed since `from`, then everything new. */
    async connect(client: LiveClient, from: { since: bigint; at: number } | undefined): Promise<void> {
      if (closed) {
        // Shutting down: come back in a moment (to whichever replica answers).
        client.send({ ...frame('bye', { reason: 'shutdown' }), id: position() });
        client.close();
        return;
      }
      clients.add(client);
      joining.set(client, []);
      let replay: LiveFrame[] | 'resync' = [];
      try {
        if (from) replay = await missed(client, from);
      } catch (err) {
        log.debug({ err: (err as Error).message }, 'status page: could not replay for a browser; it reloads');
        replay = 'resync';
      }
      if (replay === 'resync') {
        client.send({ ...frame('resync', {}), id: position() });
        drop(client);
        return;
      }
      const queued = joining.get(client) ?? [];
      joining.delete(client);
      if (!clients.has(client)) return;
      for (const f of [...replay, ...queued, frame('ready', {})]) write(client, f);
    },

    disconnect(client: LiveClient): void {
      clients.delete(client);
      joining.delete(client);
    },

    /** Sign-out on this replica: its browsers' streams end now (others' within SESSION_CHECK_MS). */
    endSession(sessionId: string): void {
      for (const c of clients) if (c.sessionId === sessionId) endClient(c, 'signed_out');
    },

    get size(): number {
      return clients.size;
    },

    close(): void {
      closed = true;
      clearInterval(tick);
      clearInterval(sweep);
      clearInterval(sessionCheck);
      agents.close();
      if (deploymentTimer) clearTimeout(deploymentTimer);
      for (const c of Array.from(clients)) endClient(c, 'shutdown');
    },
  };
}

export type LiveFeed = ReturnType<typeof createLiveFeed>;
