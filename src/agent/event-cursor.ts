/**
 * Which push events the agent has taken and finished, so that it:
 * - handles each event id once, although delivery is at least once;
 * - acks and resumes only after everything that arrived before has finished. Events are
 *   handled concurrently, and acking a later one first would move the gateway's cursor past
 *   one still in flight, losing it if the agent died then.
 */
export class EventCursor {
  private committedId: string | undefined;
  private readonly inFlight: { id: string; done: boolean }[] = [];
  /** Insertion-ordered, so the oldest ids are forgotten first. */
  private readonly seen = new Set<string>();

  constructor(private readonly remember = 10_000) {}

  /** The id to resume after: every event up to it (in arrival order) has finished. */
  get resumeAfter(): string | undefined {
    return this.committedId;
  }

  /** Takes an event; false when it was taken before (a redelivery to skip). */
  begin(eventId: string): boolean {
    if (this.seen.has(eventId)) return false;
    this.seen.add(eventId);
    if (this.seen.size > this.remember) {
      const oldest = this.seen.values().next().value;
      if (oldest !== undefined) this.seen.delete(oldest);
    }
    this.inFlight.push({ id: eventId, done: false });
    return true;
  }

  /** Marks an event finished; returns the new resume point when it moved, which is the id to ack. */
  finish(eventId: string): string | undefined {
    const entry = this.inFlight.find((e) => e.id === eventId);
    if (!entry) return undefined;
    entry.done = true;
    let advanced = false;
    while (this.inFlight[0]?.done) {
      const head = this.inFlight.shift() as { id: string };
      if (this.committedId === undefined || BigInt(head.id) > BigInt(this.committedId)) {
        this.committedId = head.id;
        advanced = true;
      }
    }
    return advanced ? this.committedId : undefined;
  }
}
