/**
 * Packing status OBJECTs (already serialized) into `status` frames that each stay within the
 * gateway's `limits.maxFrameBytes` (UTF-8 bytes of the JSON text; the gateway closes the socket
 * with 4400 on a larger frame).
 *
 * - A full set that fits is one frame `{"full":true}`; a larger one is split into parts
 *   `{"full":true,"part":i,"parts":n}`, i from 1, sent one after the other (DESIGN.md "Cluster
 *   state"). An empty full set is still one frame: it tells the gateway there is nothing.
 * - Changes are split into as many `{"full":false}` frames as they need (changes carry no parts:
 *   each frame stands on its own).
 * - Objects keep their order; a frame takes objects while they fit (first fit, in order).
 * - An object too large for any frame (only with a tiny limit: the schema bounds every text) has
 *   its message cut until it fits, then its message dropped; if it still does not fit it is left
 *   out and counted in `dropped`.
 */
import { cutText } from './status-objects.js';

export interface PackOptions {
  full: boolean;
  truncated: boolean;
  maxFrameBytes: number;
}

export interface Packed {
  frames: string[];
  /** Objects that fit in no frame, even without their message. */
  dropped: number;
}

const bytes = (text: string): number => Buffer.byteLength(text, 'utf8');

function envelope(full: boolean, truncated: boolean, part?: { part: number; parts: number }): [string, string] {
  const head = part
    ? `{"type":"status","full":${full},"part":${part.part},"parts":${part.parts},"truncated":${truncated},"objects":[`
    : `{"type":"status","full":${full},"truncated":${truncated},"objects":[`;
  return [head, ']}'];
}

export function packFrames(objects: readonly string[], options: PackOptions): Packed {
  const { full, truncated, maxFrameBytes } = options;
  if (objects.length === 0) return { frames: full ? [wrap([], envelope(full, truncated))] : [], dropped: 0 };
  // The largest envelope any frame of this set can have: part numbers up to the object count.
  const most = Math.max(1, objects.length);
  const [head, tail] = envelope(full, truncated, full ? { part: most, parts: most } : undefined);
  const capacity = maxFrameBytes - bytes(head) - bytes(tail);
  const groups: string[][] = [];
  let current: string[] = [];
  let used = 0;
  let dropped = 0;
  for (const original of objects) {
    const object = fitObject(original, capacity);
    if (object === undefined) {
      dropped++;
      continue;
    }
    const size = bytes(object);
    // A comma before every object but the first of a frame.
    if (current.length > 0 && used + 1 + size > capacity) {
      groups.push(current);
      current = [];
      used = 0;
    }
    used += (current.length > 0 ? 1 : 0) + size;
    current.push(object);
  }
  if (current.length > 0 || groups.length === 0) groups.push(current);
  if (!full) return { frames: groups.filter((g) => g.length > 0).map((g) => wrap(g, envelope(false, truncated))), dropped };
  if (groups.length === 1) return { frames: [wrap(groups[0] as string[], envelope(true, truncated))], dropped };
  const parts = groups.length;
  return { frames: groups.map((g, i) => wrap(g, envelope(true, truncated, { part: i + 1, parts }))), dropped };
}

function wrap(objects: string[], [head, tail]: [string, string]): string {
  return `${head}${objects.join(',')}${tail}`;
}

/** The object as it is when it fits `capacity` bytes; else with its message cut, then without it; else undefined. */
export function fitObject(json: string, capacity: number): string | undefined {
  if (bytes(json) <= capacity) return json;
  const object = JSON.parse(json) as Record<string, unknown>;
  const message = typeof object['message'] === 'string' ? object['message'] : '';
  delete object['message'];
  const bare = JSON.stringify(object);
  if (bytes(bare) > capacity) return undefined;
  // The longest cut of the message that still fits (binary search: multi-byte and escaped text
  // make bytes and characters differ).
  const withMessage = (length: number): string => JSON.stringify({ ...object, message: cutText(message, length) });
  let lo = 0;
  let hi = message.length;
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (bytes(withMessage(mid)) <= capacity) lo = mid;
    else hi = mid - 1;
  }
  return lo > 1 ? withMessage(lo) : bare;
}
