/**
 * One connection's `status` frames, turned into work for the store (no I/O here).
 *
 * A full set split into parts (`part` i of `parts`) is assembled in memory and replaces nothing
 * until part n has come; a new full set (part 1, or a full frame without parts) restarts the
 * assembly. Changes that arrive while a set is being assembled are held and applied after it.
 * Work waiting for the store is coalesced: a full set absorbs the changes after it, changes
 * absorb later changes, so what is queued per connection is bounded by its objects, whatever
 * the frame rate and however long the store is away.
 */
import { ErrorCode, type DeletedObject, type ReportedObject, type StatusFrame } from '../protocol/kasgate-v1.js';
import { objectKey } from '../deployments/matching.js';

export const DELETED = 'deleted' as const;
export type Entry = ReportedObject | typeof DELETED;

export interface StatusWork {
  /** A full set: replaces what this connection reported before. */
  full: boolean;
  /** key → object, or DELETED (changes only). */
  objects: Map<string, Entry>;
  /** The agent's `truncated`, when the frame(s) said. */
  agentTruncated: boolean | undefined;
  /** Objects dropped before the store because one full set carried more than the limit. */
  overflow: number;
}

export type IntakeResult = { ok: true; work?: StatusWork } | { ok: false; code: string; message: string };

const isDeleted = (o: ReportedObject | DeletedObject): o is DeletedObject => 'deleted' in o && o.deleted === true;

/** Applies later changes onto earlier work (full or changes). */
export function absorb(earlier: StatusWork, later: StatusWork): StatusWork {
  if (later.full) return later;
  const objects = new Map(earlier.objects);
  for (const [key, entry] of later.objects) {
    if (earlier.full && entry === DELETED) objects.delete(key);
    else objects.set(key, entry);
  }
  return {
    full: earlier.full,
    objects,
    agentTruncated: later.agentTruncated ?? earlier.agentTruncated,
    overflow: earlier.overflow,
  };
}

export class StatusIntake {
  private assembly: { parts: number; next: number; work: StatusWork } | undefined;
  private held: StatusWork | undefined;

  /** `maxObjects` bounds what one assembly keeps in memory. */
  constructor(private readonly maxObjects: number) {}

  receive(frame: StatusFrame): IntakeResult {
    const work = this.workOf(frame);
    if (!frame.full) {
      if (this.assembly) {
        this.held = this.held ? absorb(this.held, work) : work;
        return { ok: true };
      }
      return { ok: true, work };
    }
    const part = frame.part ?? 1;
    const parts = frame.parts ?? 1;
    if (part === 1) {
      this.held = undefined;
      this.assembly = { parts, next: 2, work };
    } else {
      const current = this.assembly;
      if (!current || current.parts !== parts || current.next !== part) {
        const expected = current ? `part ${current.next} of ${current.parts}` : 'part 1';
        this.assembly = undefined;
        this.held = undefined;
        return {
          ok: false,
          code: ErrorCode.StatusPartOutOfOrder,
          message: `status part ${part} of ${parts} does not continue the full set (expected ${expected}); send the full set again from part 1`,
        };
      }
      for (const [key, entry] of work.objects) this.add(current.work, key, entry);
      current.work.agentTruncated = frame.truncated ?? current.work.agentTruncated;
      current.next++;
    }
    const assembly = this.assembly!;
    if (assembly.next <= assembly.parts) return { ok: true };
    this.assembly = undefined;
    const complete = this.held ? absorb(assembly.work, this.held) : assembly.work;
    this.held = undefined;
    return { ok: true, work: complete };
  }

  private add(work: StatusWork, key: string, entry: Entry): void {
    if (work.full && entry === DELETED) {
      work.objects.delete(key);
      return;
    }
    if (work.full && !work.objects.has(key) && work.objects.size >= this.maxObjects) {
      work.overflow++;
      return;
    }
    work.objects.set(key, entry);
  }

  private workOf(frame: StatusFrame): StatusWork {
    const work: StatusWork = { full: frame.full, objects: new Map(), agentTruncated: frame.truncated, overflow: 0 };
    for (const object of frame.objects) this.add(work, objectKey(object), isDeleted(object) ? DELETED : object);
    return work;
  }
}
