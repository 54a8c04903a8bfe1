/** Small formatting rules of the status page, shared by the server templates and the live feed. */

/** GitLab's own short sha length is 8. */
export const shortSha = (sha: string | null | undefined): string => (sha ? sha.slice(0, 8) : '');

/** refs/heads/main → main, refs/tags/v1 → v1 (tag), anything else as it is. */
export function refLabel(ref: string): { name: string; tag: boolean } {
  if (ref.startsWith('refs/heads/')) return { name: ref.slice('refs/heads/'.length), tag: false };
  if (ref.startsWith('refs/tags/')) return { name: ref.slice('refs/tags/'.length), tag: true };
  return { name: ref, tag: false };
}

/** "12 s ago", "5 min ago", "3 h ago", "2 d ago". The browser keeps these fresh (live.js does the same). */
export function ago(iso: string, now = Date.now()): string {
  const seconds = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (seconds < 60) return `${seconds} s ago`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 86_400) return `${Math.floor(seconds / 3600)} h ago`;
  return `${Math.floor(seconds / 86_400)} d ago`;
}

/** Absolute time for titles and the timeline: 2025-12-01 10:42:03 UTC. */
export const utc = (iso: string): string => `${iso.slice(0, 10)} ${iso.slice(11, 19)} UTC`;

export function duration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms < 3_600_000) return `${Math.floor(ms / 60_000)} min ${Math.round((ms % 60_000) / 1000)} s`;
  return `${Math.floor(ms / 3_600_000)} h ${Math.round((ms % 3_600_000) / 60_000)} min`;
}

/** What kind of event, in words: push, tag push, or an artifact with its source (pipeline, registry). */
export function kindLabel(event: { kind: string; source?: string | null }): string {
  const kind = event.kind.replaceAll('_', ' ');
  return event.source ? `${kind} (${event.source})` : kind;
}

export const plural = (n: number, one: string, many = `${one}s`): string => `${n} ${n === 1 ? one : many}`;
