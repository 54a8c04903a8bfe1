/**
 * The dispatcher hands every event to the local hub exactly once per replica, in id order.
 * Doorbells say which events were appended and the id just below their batch's first one. Appends
 * overlap, so a batch may commit (and ring) before one that drew lower ids: its doorbell is parked
 * until everything below it is dispatched. When the missing doorbell does not come within a
 * moment (lost, or its batch rolled back), the gap is read from Postgres, which never returns an
 * event while a lower one may still commit (the log's horizon). The same catch-up runs when the
 * bus reconnects and on a slow periodic sweep. It never moves past an id it has not read, so a
 * failed read only delays delivery until the next attempt.
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
/** How long a parked doorbell waits for the ones below it before the gap is read from the log. */
const PARKED_GRACE_MS = 20;
/** Parked doorbells beyond this many are dropped and read from the log instead. */
const MAX_PARKED = 1000;

type EventsMessage = Extract<BusMessage, { type: 'events' }>;

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

  /** Doorbells whose batch drew ids above a gap not dispatched yet, by their prevId. */
  const parked = new Map<bigint, EventsMessage>();
  let parkedTimer: NodeJS.Timeout | undefined;

  function deliver(message: EventsMessage): void {
    for (const event of message.events) if (BigInt(event.id) > highest) dispatch(event, message.storedAt);
  }

  /** Delivers the parked doorbells that are now contiguous, and forgets those already covered. */
  function drainParked(): void {
    for (let progressed = true; progressed; ) {
      progressed = false;
      for (const [prevId, message] of parked) {
        if (BigInt(message.events.at(-1)!.id) <= highest) parked.delete(prevId);
        else if (prevId <= highest) {
          parked.delete(prevId);
          deliver(message);
          progressed = true;
        }
      }
    }
    if (parked.size > 0) parkedTimer ??= setTimeout(readParkedGap, PARKED_GRACE_MS).unref();
  }

  function readParkedGap(): void {
    parkedTimer = undefined;
    void serially(async () => {
      if (parked.size === 0) return;
      await catchUp('gap');
      drainParked();
    });
  }

  function onEvents(message: EventsMessage): Promise<void> {
    return serially(() => {
      const last = message.events.at(-1);
      if (!last || BigInt(last.id) <= highest) return;
      const prevId = BigInt(message.prevId);
      if (prevId > highest) {
        // A batch below this one has not rung yet: it may still be committing.
        if (parked.size >= MAX_PARKED) parked.clear();
        parked.set(prevId, message);
        drainParked();
        return;
      }
      deliver(message);
      drainParked();
    });
  }

  let sweeping: Promise<void> | undefined;
  async function sweepOnce(graceMs: number): Promise<void> {
    const stored = BigInt(await deps.events.highestId());
    if (stored <= highest) return;
    if (graceMs > 0) await new Promise((resolve) => setTimeout(resolve, graceMs).unref());
    await serially(async () => {
      if (highest < stored) await catchUp('sweep');
      drainParked();
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
  deps.bus.onReconnect(
    () =>
      void serially(async () => {
        await catchUp('reconnect');
        drainParked();
      }),
  );
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
      clearTimeout(parkedTimer);
      await sweeping;
      stopped = true;
      await chain;
    },
  };
}

export type Dispatcher = Awaited<ReturnType<typeof startDispatcher>>;
