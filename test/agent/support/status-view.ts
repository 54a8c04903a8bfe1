/**
 * What a gateway knows from one connection's `status` frames (DESIGN.md "Cluster state"): a
 * full set (one frame, or parts 1..n in order) replaces everything; changes update or delete.
 * Protocol misuse (a part out of order, changes between parts, a full set without its last
 * part) throws, so that a test fails on it.
 */
import type { DeletedObject, ReportedObject, StatusFrame } from '../../../src/protocol/kasgate-v1.js';
import type { PeerConnection } from './protocol-peer.js';

export const keyOf = (o: { kind: string; namespace: string; name: string }): string => `${o.kind}/${o.namespace}/${o.name}`;

const isDeleted = (o: ReportedObject | DeletedObject): o is DeletedObject => 'deleted' in o && o.deleted === true;

export class StatusView {
  readonly objects = new Map<string, ReportedObject>();
  fullSets = 0;
  changeFrames = 0;
  truncated = false;
  private pending: { parts: number; next: number; objects: ReportedObject[] } | undefined;

  apply(frame: StatusFrame): void {
    if (frame.full) {
      const parts = frame.parts ?? 1;
      const part = frame.part ?? 1;
      if (part === 1) this.pending = { parts, next: 1, objects: [] };
      if (!this.pending || this.pending.next !== part || this.pending.parts !== parts) throw new Error(`full-set part ${part}/${parts} out of order`);
      for (const o of frame.objects) {
        if (isDeleted(o)) throw new Error('a full set carries no deletions');
        this.pending.objects.push(o);
      }
      this.pending.next++;
      this.truncated = frame.truncated === true || (part > 1 && this.truncated);
      if (part === parts) {
        this.objects.clear();
        for (const o of this.pending.objects) this.objects.set(keyOf(o), o);
        this.pending = undefined;
        this.fullSets++;
      }
      return;
    }
    if (this.pending) throw new Error('a change frame arrived between the parts of a full set');
    this.changeFrames++;
    this.truncated = frame.truncated === true;
    for (const o of frame.objects) {
      if (isDeleted(o)) this.objects.delete(keyOf(o));
      else this.objects.set(keyOf(o), o);
    }
  }

  get(key: string): ReportedObject | undefined {
    return this.objects.get(key);
  }

  keys(): string[] {
    return [...this.objects.keys()].sort();
  }
}

/** The view of everything a connection has sent so far. */
export function viewOf(connection: PeerConnection): StatusView {
  const view = new StatusView();
  for (const frame of connection.framesOf('status')) view.apply(frame);
  return view;
}
