/** Constant-time comparison of presented secrets against configured ones (webhook secrets, registry secrets, signatures). */
import { hash, timingSafeEqual } from 'node:crypto';

/** SHA-256 of a value: fixed-length, so comparisons take the same time whatever the lengths. */
// (crypto.hash, one call without a Hash object: a third of createHash's cost, once per webhook.)
export const digest = (value: string | Buffer): Buffer => hash('sha256', value, 'buffer');

/** Constant-time membership: compares against every candidate, whatever matches first. */
export function matchesAny(candidate: Buffer, known: Buffer[]): boolean {
  let found = false;
  for (const k of known) found = timingSafeEqual(candidate, k) || found;
  return found;
}

/** A set of secrets that can only be asked whether a presented value is one of them. */
export function secretSet(secrets: string[]): { readonly size: number; has(presented: string): boolean } {
  const digests = secrets.map(digest);
  return {
    size: digests.length,
    has: (presented) => matchesAny(digest(presented), digests),
  };
}
