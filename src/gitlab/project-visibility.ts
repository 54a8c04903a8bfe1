/**
 * Which watched projects GitLab says are public, for subscribe answers (a public project is
 * `granted` before its first push reaches the log). Answers are cached as kas caches project
 * info: 5 minutes, and 1 minute for errors (gitlabhq/omnibus-gitlab
 * files/gitlab-cookbooks/gitlab-kas/attributes/default.rb: agent_gitops_project_info_cache_ttl
 * 300, agent_gitops_project_info_cache_error_ttl 60). `GET /projects/:id` → `visibility`
 * (gitlabhq doc/api/projects.md). A subscribe never waits longer than `waitMs`: what is not
 * answered by then is not public (fail closed) and the answer lands in the cache for next time.
 * Only `"public"` counts; 404, 403, errors and internal/private do not.
 */
import type { Logger } from 'pino';
import type { GitLabApi } from './api/client.js';
import { isWellFormedPath, normalizePath } from '../agents/access-rule.js';

export const VISIBILITY_TTL_MS = 5 * 60_000;
export const VISIBILITY_ERROR_TTL_MS = 60_000;
/** At most this many lookups start per subscribe; the rest wait for later subscribes (fail closed meanwhile). */
const MAX_LOOKUPS_PER_CALL = 20;
const MAX_ENTRIES = 50_000;

export interface ProjectVisibility {
  /** The lower-cased paths among these that GitLab says are public (within `waitMs`). */
  publicAmong(paths: string[]): Promise<Set<string>>;
}

export function createProjectVisibility(options: { api: GitLabApi; log: Logger; waitMs: number; now?: () => number }): ProjectVisibility {
  const { log, waitMs } = options;
  const now = options.now ?? Date.now;
  // One attempt: a subscribe is no place to wait out GitLab's trouble; the error TTL spaces retries.
  const api = options.api.withPolicy({ maxAttempts: 1 });
  const cache = new Map<string, { isPublic: boolean; until: number }>();
  const inFlight = new Map<string, Promise<void>>();

  function lookUp(path: string): Promise<void> {
    let pending = inFlight.get(path);
    if (pending) return pending;
    pending = api.projects
      .show(path)
      .then(
        (project) => {
          cache.set(path, { isPublic: (project as { visibility?: string }).visibility === 'public', until: now() + VISIBILITY_TTL_MS });
        },
        (err: { status?: number; message?: string }) => {
          // 404: not visible to the token (or absent); anything else: GitLab trouble. Either way not public.
          const answered = err.status !== undefined && err.status < 500 && err.status !== 429;
          cache.set(path, { isPublic: false, until: now() + (answered ? VISIBILITY_TTL_MS : VISIBILITY_ERROR_TTL_MS) });
          if (!answered) log.debug({ err: err.message }, 'project visibility lookup failed; treated as not public');
        },
      )
      .finally(() => {
        inFlight.delete(path);
        if (cache.size > MAX_ENTRIES) cache.delete(cache.keys().next().value!);
      });
    inFlight.set(path, pending);
    return pending;
  }

  return {
    async publicAmong(paths) {
      const result = new Set<string>();
      const waits: Promise<void>[] = [];
      const t = now();
      for (const raw of paths) {
        const path = normalizePath(raw);
        if (!isWellFormedPath(path) || !path.includes('/')) continue;
        const hit = cache.get(path);
        if (hit && hit.until > t) {
          if (hit.isPublic) result.add(path);
        } else if (waits.length < MAX_LOOKUPS_PER_CALL) {
          waits.push(lookUp(path));
        }
      }
      if (waits.length > 0) {
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([Promise.all(waits), new Promise((resolve) => (timer = setTimeout(resolve, waitMs)))]);
        clearTimeout(timer);
        const after = now();
        for (const raw of paths) {
          const path = normalizePath(raw);
          const hit = cache.get(path);
          if (hit && hit.until > after && hit.isPublic) result.add(path);
        }
      }
      return result;
    },
  };
}
