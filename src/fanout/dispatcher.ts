/**
 * The dispatcher hands every event to the local hub exactly once per replica, in id order.
 * Doorbells say which events were appended and which id preceded them; when that id is past
 * what this replica dispatched, something was missed, and it is read from Postgres first. The
 * same catch-up runs when the bus reconnects and on a slow periodic sweep. It never moves past
 * an id it has not read, so a failed read only delays delivery until the next attempt.
 */
import type { Logger } from 'pino';
import type { EventLog } from '../events/event-log.js';
import type { StoredEvent } from '../events/event.js';
import type { Metrics } from '../metrics.js';
import type { Bus, BusMessage } from './bus.js';
import type { Hub } from './hub.js';

const CATCH_UP_PAGE = 1000;
/**
 * A sweep that finds undispatched events gives their doorbells this long to arrive first: an
 * event is in the log a moment before its doorbell is, and reading it twice would be waste.
 */
const SWEEP_GRACE_MS = 500;

export interface DispatcherDeps {
  events: Pick<EventLog, 'readAfter' | 'highestId'>;
  hub: Pick<Hub, 'dispatch'>;
  bus: Bus;
  metrics: Metrics;
  log: Logger;
  sweepSeconds: number;
}

export async function startDispatcher(deps: DispatcherDeps) {
  let highest = BigInt(await deps.events.highestId());
  let stopped = false;
  let chain: Promise<void> = Promise.resolve();
  const serially = (task: () => Promise<void> | void) => {
    chain = chain
      .then(() => (stopped ? undefined : task()))
      .catch((err: Error) => deps.log.warn({ err: err.message }, 'dispatch failed; the sweep retries'));
    return chain;
  };

  function dispatch(event: StoredEvent, storedAt?: number): void {
    deps.hub.dispatch(event, storedAt);
    highest = BigInt(event.id);
  }

  async function catchUp(reason: string): Promise<number> {
    let total = 0;
    for (;;) {
      const page = await deps.events.readAfter(String(highest), CATCH_UP_PAGE);
      for (const event of page) dispatch(event);
      total += page.length;
      if (page.length < CATCH_UP_PAGE) break;
    }
    if (total > 0) {
      deps.metrics.doorbellGapsRecovered.inc(total);
      deps.log.info({ events: total, through: String(highest), reason }, 'caught up on events the doorbell missed');
    }
    return total;
  }

  function onEvents(message: Extract<BusMessage, { type: 'events' }>): Promise<void> {
    return serially(async () => {
      const last = message.events.at(-1);
      if (!last || BigInt(last.id) <= highest) return;
      if (BigInt(message.prevId) > highest) await catchUp('gap');
      for (const event of message.events) if (BigInt(event.id) > highest) dispatch(event, message.storedAt);
    });
  }

  let sweeping: Promise<void> | undefined;
  async function sweepOnce(graceMs: number): Promise<void> {
    const stored = BigInt(await deps.events.highestId());
    if (stored <= highest) return;
    if (graceMs > 0) await new Promise((resolve) => setTimeout(resolve, graceMs).unref());
    await serially(async () => {
      if (highest < stored) await catchUp('sweep');
    });
  }
  const sweep = (graceMs: number): Promise<void> => {
    sweeping ??= sweepOnce(graceMs)
      .catch((err: Error) => deps.log.warn({ err: err.message }, 'sweep failed; retrying at the next one'))
      .finally(() => (sweeping = undefined));
    return sweeping;
  };

  deps.bus.onMessage((message) => {
    if (message.type === 'events') void onEvents(message);
  });
  deps.bus.onReconnect(() => void serially(async () => void (await catchUp('reconnect'))));
  const timer = setInterval(() => void sweep(SWEEP_GRACE_MS), deps.sweepSeconds * 1000);
  timer.unref();

  return {
    get highestDispatched(): string {
      return String(highest);
    },
    /** Events this replica appended: dispatched at once, not only when their doorbell comes back. */
    offer: (batch: Extract<BusMessage, { type: 'events' }>) => onEvents(batch),
    /** Catches up with the log now, without the periodic sweep's grace, and waits for it. */
    sweep: () => sweep(0),
    async stop(): Promise<void> {
      clearInterval(timer);
      await sweeping;
      stopped = true;
      await chain;
    },
  };
}

export type Dispatcher = Awaited<ReturnType<typeof startDispatcher>>;
