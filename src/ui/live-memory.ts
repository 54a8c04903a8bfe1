/**
 * What the live feed (live-feed.ts) remembers, so that a browser that reconnects is sent what it
 * missed: the latest events, and the latest change of each agent and event. Both are bounded;
 * a browser from before what is kept is told to reload.
 */
import type { StoredEvent } from '../events/event.js';
import type { BusMessage } from '../fanout/bus.js';
import type { DeploymentView } from './cluster-view.js';
import type { LiveFrame } from './live-feed.js';

const EVENTS_KEPT = 1000;
const CHANGES_KEPT = 5000;

export type AgentChange = Extract<BusMessage, { type: 'live'; topic: 'agent' }>;

export interface EventEntry {
  event: StoredEvent;
  deliveredCount: number;
  deployments?: DeploymentView[];
  row?: string;
}

export interface ChangeEntry {
  at: number;
  key: string;
  /** Rendered when first needed: nobody may be watching when it happens. */
  frames?: { overview?: LiveFrame; agent?: LiveFrame; event?: LiveFrame };
  change: AgentChange | { topic: 'deployments' | 'deliveries'; eventId: string };
}

export class LiveMemory {
  private readonly events: EventEntry[] = [];
  private readonly index = new Map<string, EventEntry>();
  /** Every event above this id has been seen (and those kept are in `events`). */
  private coveredAfter = 0n;
  /** The highest event seen. */
  highest = 0n;
  private readonly changes = new Map<string, ChangeEntry>();
  /** A browser whose page is older than this may have missed changes no longer held (or never seen). */
  private changesCoveredFrom = Date.now();

  /** `marginMs`: how far a page's render and its browser's connection (and clocks) may be apart. */
  constructor(private readonly marginMs: number) {}

  /** Events up to here were never the feed's to show. */
  startAfter(eventId: string): void {
    this.coveredAfter = this.highest = BigInt(eventId);
  }

  /** Keeps a newly dispatched event; undefined when it is not newer than the highest seen. */
  addEvent(event: StoredEvent): EventEntry | undefined {
    const id = BigInt(event.id);
    if (id <= this.highest) return undefined;
    this.highest = id;
    const entry: EventEntry = { event, deliveredCount: 0 };
    this.events.push(entry);
    this.index.set(event.id, entry);
    while (this.events.length > EVENTS_KEPT) {
      const gone = this.events.shift()!;
      this.index.delete(gone.event.id);
      this.coveredAfter = BigInt(gone.event.id);
    }
    return entry;
  }

  event(id: string): EventEntry | undefined {
    return this.index.get(id);
  }

  eventsAfter(since: bigint): EventEntry[] {
    return this.events.filter((e) => BigInt(e.event.id) > since);
  }

  /** The latest change under `key`, replacing the one before. */
  remember(key: string, entry: ChangeEntry): void {
    this.changes.delete(key);
    this.changes.set(key, entry);
    while (this.changes.size > CHANGES_KEPT) {
      const [oldestKey, oldest] = this.changes.entries().next().value!;
      this.changes.delete(oldestKey);
      this.changesCoveredFrom = oldest.at + this.marginMs;
    }
  }

  /** A copy: rendering awaits, and changes may come meanwhile. */
  changesNow(): ChangeEntry[] {
    return Array.from(this.changes.values());
  }

  /** Whether a browser at `from` can be told everything it missed. */
  covers(from: { since: bigint; at: number }): boolean {
    return from.since >= this.coveredAfter && from.at >= this.changesCoveredFrom;
  }
}
