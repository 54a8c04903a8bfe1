/**
 * One clock for every benchmark process: CLOCK_MONOTONIC (process.hrtime), which is system-wide,
 * so a send time stamped by the runner compares with a receive time taken in a subscriber.
 *
 * The send time rides inside the push itself, in the `after` commit sha, which both kasgate and
 * the floor copy into their frames: 40 decimal digits (valid hex), a 10-digit sequence number
 * then the send time in µs.
 */
const AFTER_MARKER = Buffer.from('"after":"');
const SHA_LENGTH = 40;

export function nowUs(): number {
  const [seconds, nanos] = process.hrtime();
  return seconds * 1e6 + nanos / 1e3;
}

export function afterSha(sequence: number, sentUs: number): string {
  return String(sequence % 1e10).padStart(10, '0') + String(Math.round(sentUs)).padStart(SHA_LENGTH - 10, '0');
}

export function sentAtUs(sha: string): number {
  return Number(sha.slice(10));
}

/** The `after` sha of a push frame, without parsing the JSON. */
export function keyOfFrame(frame: Buffer): string | undefined {
  const at = frame.indexOf(AFTER_MARKER);
  if (at < 0) return undefined;
  const start = at + AFTER_MARKER.length;
  return frame.toString('latin1', start, start + SHA_LENGTH);
}
