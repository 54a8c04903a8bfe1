/**
 * Replay: sends a session every stored event after its position that the access rule allows,
 * then merges the live events buffered meanwhile and switches it to live. The merge and the
 * switch run without an await in between, so no live event can slip past.
 *
 * Retention may delete events while they are being read. A deletion commits together with
 * `pruned_through`, so reading `pruned_through` once more after the last page tells whether any
 * page may have missed rows; if so the agent is told to resync, never left with a silent gap.
 */
import type { Logger } from 'pino';
import type { EventLog } from '../events/event-log.js';
import type { DeliveryRecorder } from '../deployments/deliveries.js';
import type { Metrics } from '../metrics.js';
import type { AgentSession } from './agent-session.js';
import { frameBytes } from './frames.js';
import { retryDelayMs } from '../lib/retry-delay.js';

const PAGE = 500;

export interface ReplayDeps {
  events: Pick<EventLog, 'readAfter' | 'prunedThrough' | 'highestId'>;
  deliveries: Pick<DeliveryRecorder, 'record'>;
  metrics: Metrics;
  log: Logger;
}

/** Retries a read while the session lives: a Postgres outage must not drop connected agents. */
export async function whileOpen<T>(
  session: AgentSession,
  deps: Pick<ReplayDeps, 'log'>,
  read: () => Promise<T>,
): Promise<T | undefined> {
  for (let attempt = 0; session.isOpen; attempt++) {
    try {
      return await read();
    } catch (err) {
      const delay = retryDelayMs(attempt);
      deps.log.warn({ err: (err as Error).message, connectionId: session.id.connectionId, retryInMs: delay }, 'replay read failed');
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }
  return undefined;
}

function sendResync(session: AgentSession, deps: ReplayDeps): void {
  session.send({ type: 'resync', reason: 'cursor_expired' });
  deps.metrics.resyncsSent.inc();
}

export async function replay(session: AgentSession, deps: ReplayDeps): Promise<void> {
  const bounds = await whileOpen(session, deps, async () => {
    const pruned = BigInt(await deps.events.prunedThrough());
    const stored = BigInt(await deps.events.highestId());
    // Retention may have emptied the log: the last id ever issued is then its pruned edge.
    return { pruned, highest: stored > pruned ? stored : pruned };
  });
  if (!bounds) return;
  // Older than the retained log, or ahead of it (a log that was reset): pushes may have been missed.
  if (session.lastSentId < bounds.pruned || session.lastSentId > bounds.highest) {
    sendResync(session, deps);
    session.lastSentId = session.lastSentId < bounds.pruned ? bounds.pruned : bounds.highest;
  }
  const readFrom = session.lastSentId;

  const projects = [...session.projects.keys()];
  for (;;) {
    const page = await whileOpen(session, deps, () => deps.events.readAfter(String(session.lastSentId), PAGE, projects));
    if (!page) return;
    for (const event of page) {
      const id = BigInt(event.id);
      if (session.mayReceive(event) && session.writeEvent(id, frameBytes(event))) {
        deps.metrics.eventsReplayed.inc();
        deps.metrics.pushesDelivered.inc();
        deps.deliveries.record(event.id, [session.agentId]);
      }
      if (id > session.lastSentId) session.lastSentId = id;
    }
    if (page.length === PAGE) {
      await session.drained();
      continue;
    }

    // Caught up with the log: merge what the hub buffered meanwhile, then go live.
    // An overflowed buffer lost events: read them from the log again instead.
    const { events, overflowed } = session.takeBuffer();
    if (overflowed) continue;
    for (const { event, id, frame } of events) {
      if (session.writeEvent(id, frame)) {
        deps.metrics.pushesDelivered.inc();
        deps.deliveries.record(event.id, [session.agentId]);
      }
    }
    session.goLive();
    break;
  }

  const prunedAfter = await whileOpen(session, deps, () => deps.events.prunedThrough());
  if (prunedAfter !== undefined && BigInt(prunedAfter) > readFrom) {
    deps.log.info({ connectionId: session.id.connectionId, readFrom: String(readFrom), prunedAfter }, 'retention overtook a replay');
    sendResync(session, deps);
  }
}
