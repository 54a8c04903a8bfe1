/** What a failed GitLab API call was, classified: retry it (later), or never. */
export class GitLabApiError extends Error {
  override name = 'GitLabApiError';

  constructor(
    message: string,
    readonly details: {
      method: string;
      /** The path under /api/v4, without the query (never the token). */
      path: string;
      /** The HTTP status; undefined when no answer came (timeout, connection refused, aborted). */
      status: number | undefined;
      /** Worth trying again: 429, 5xx, no answer; a 4xx otherwise never is (unless the caller's policy says). */
      retryable: boolean;
      /** From GitLab's Retry-After, when it sent one. */
      retryAfterMs: number | undefined;
      /** GitLab's answer (its `message` / `error`), shortened. */
      body: string | undefined;
    },
  ) {
    super(message);
  }

  get status(): number | undefined {
    return this.details.status;
  }

  get retryable(): boolean {
    return this.details.retryable;
  }

  get retryAfterMs(): number | undefined {
    return this.details.retryAfterMs;
  }
}

export const isGitLabApiError = (err: unknown): err is GitLabApiError => err instanceof GitLabApiError;

/** 408, 429 and 5xx: GitLab (or a proxy before it) is busy or away, not refusing the request. */
export function isTransientStatus(status: number): boolean {
  return status === 408 || status === 429 || status >= 500;
}

/**
 * Retry-After in milliseconds: delta seconds or an HTTP date (RFC 9110 §10.2.3); GitLab's rate
 * limiter sends seconds. Undefined when absent or unreadable.
 */
export function parseRetryAfter(value: string | null | undefined, now: number = Date.now()): number | undefined {
  if (!value) return undefined;
  const text = value.trim();
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  const at = Date.parse(text);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}
