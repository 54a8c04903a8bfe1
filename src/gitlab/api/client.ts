/**
 * The one GitLab API client of the gateway (commit statuses; the agent configuration file,
 * projects, groups and deploy tokens build on it too).
 *
 * It is gitbeaker's resources (@gitbeaker/rest, `Commits`, `Projects`, …) on a requester of our
 * own, because gitbeaker's default one does not fit a gateway: it retries only 429 and 502,
 * ignores Retry-After, waits 0.25 ms doubling (ten retries within a quarter second), counts its
 * query timeout from before its rate limiter and its retries, and limits per endpoint per minute
 * with no burst (node_modules/@gitbeaker/rest/dist/index.mjs `defaultRequestHandler`,
 * @gitbeaker/requester-utils `getMatchingRateLimiter`). Ours: one token bucket per client
 * (requestsPerSecond, burst) that a 429 pauses; a timeout per attempt; retries of 408, 429 and
 * 5xx and of unanswered requests, with exponential backoff and jitter, honouring Retry-After;
 * every failure a GitLabApiError saying whether it is worth retrying. gitbeaker still builds
 * the paths (URL-encoding project paths), the JSON bodies and the auth header.
 */
import { createRequesterFn, type RequesterType, type ResourceOptions } from '@gitbeaker/requester-utils';
import { Commits, DeployTokens, Groups, Projects, RepositoryFiles } from '@gitbeaker/rest';
import type { Logger } from 'pino';
import type { Metrics } from '../../metrics.js';
import { GitLabApiError, isTransientStatus, parseRetryAfter } from './errors.js';
import { sleep, TokenBucket } from './rate-limiter.js';

export interface GitLabApiOptions {
  /** GitLab's base URL (KASGATE_GITLAB_URL), e.g. https://gitlab.example.com or https://example.com/gitlab. */
  url: string;
  /** Sent as PRIVATE-TOKEN; never logged. */
  token: string;
  requestsPerSecond: number;
  burst: number;
  /** Per attempt (KASGATE_GITLAB_TIMEOUT). */
  timeoutMs: number;
  log: Logger;
  metrics: Metrics;
}

export interface RetryPolicy {
  /** Attempts per call, the first included (default 4). 1: the caller retries (e.g. a durable queue). */
  maxAttempts: number;
  /** Which HTTP statuses are worth another attempt (default: 408, 429, 5xx). */
  retryStatus: (status: number) => boolean;
  /** A Retry-After longer than this is not waited for in the call: it fails, retryable, with retryAfterMs (default 30 s). */
  maxRetryDelayMs: number;
}

export const DEFAULT_POLICY: RetryPolicy = { maxAttempts: 4, retryStatus: isTransientStatus, maxRetryDelayMs: 30_000 };

type Resource<T> = new (options: any) => T;

export interface GitLabApi {
  /** A gitbeaker resource on this client, e.g. `api.resource(Pipelines)`; one instance per class. */
  resource<T>(Resource: Resource<T>): T;
  readonly commits: InstanceType<typeof Commits<false>>;
  readonly projects: InstanceType<typeof Projects<false>>;
  readonly groups: InstanceType<typeof Groups<false>>;
  readonly repositoryFiles: InstanceType<typeof RepositoryFiles<false>>;
  readonly deployTokens: InstanceType<typeof DeployTokens<false>>;
  /** The same client (bucket, metrics) with another retry policy; closing it closes only it, closing this closes both. */
  withPolicy(policy: Partial<RetryPolicy>): GitLabApi;
  /** Aborts every request in flight and refuses new ones. */
  close(): void;
}

const BACKOFF_BASE_MS = 500;
const BACKOFF_CAP_MS = 30_000;
/** How much of an error answer is kept (GitLab's are short JSON). */
const BODY_EXCERPT = 500;

/** Exponential with jitter: attempt 1 → 250–500 ms, 2 → 500–1000 ms, … capped. */
export function backoffMs(attempt: number, baseMs = BACKOFF_BASE_MS, capMs = BACKOFF_CAP_MS): number {
  const ceiling = Math.min(capMs, baseMs * 2 ** Math.max(0, attempt - 1));
  return ceiling / 2 + Math.random() * (ceiling / 2);
}

function excerpt(text: string, contentType: string | null): string {
  if (contentType?.includes('json')) {
    try {
      const parsed = JSON.parse(text) as { message?: unknown; error?: unknown };
      const said = parsed.message ?? parsed.error;
      if (said !== undefined) return (typeof said === 'string' ? said : JSON.stringify(said)).slice(0, BODY_EXCERPT);
    } catch {
      // not JSON after all: keep the text
    }
  }
  return text.slice(0, BODY_EXCERPT);
}

async function parseBody(response: Response, asStream: boolean): Promise<unknown> {
  if (asStream) return response.body;
  if (response.status === 204) return null;
  const type = (response.headers.get('content-type') ?? '').split(';')[0]!.trim();
  if (type === 'application/json') return (await response.json()) ?? {};
  if (type.startsWith('text/')) return response.text();
  return response.blob();
}

interface Shared {
  options: GitLabApiOptions;
  bucket: TokenBucket;
}

function build(shared: Shared, policy: RetryPolicy, parent?: AbortSignal): GitLabApi {
  const { options, bucket } = shared;
  // Closing this client aborts its requests; closing the one it came from aborts them too.
  const own = new AbortController();
  const closing = { signal: parent ? AbortSignal.any([parent, own.signal]) : own.signal };
  const { log, metrics } = options;

  async function send(endpoint: string, request: Record<string, unknown>) {
    const method = String(request.method ?? 'GET');
    const prefix = String(request.prefixUrl);
    const url = new URL(endpoint, prefix.endsWith('/') ? prefix : `${prefix}/`);
    if (typeof request.searchParams === 'string') url.search = request.searchParams;
    const path = url.pathname.replace(/^.*?\/api\/v4\//, '/');
    const callerSignal = request.signal instanceof AbortSignal ? request.signal : undefined;
    const fail = (message: string, status: number | undefined, retryable: boolean, retryAfterMs?: number, body?: string) =>
      new GitLabApiError(`GitLab ${method} ${path}: ${message}`, { method, path, status, retryable, retryAfterMs, body });

    for (let attempt = 1; ; attempt++) {
      if (closing.signal.aborted) throw fail('the client is closed', undefined, true);
      await bucket.take(closing.signal).catch(() => {
        throw fail('the client is closed', undefined, true);
      });
      const signals = [AbortSignal.timeout(options.timeoutMs), closing.signal, ...(callerSignal ? [callerSignal] : [])];
      let response: Response;
      try {
        response = await fetch(url, {
          method,
          headers: request.headers as Record<string, string>,
          body: request.body as string | FormData | undefined,
          signal: AbortSignal.any(signals),
        });
      } catch (err) {
        const timedOut = (err as Error).name === 'TimeoutError';
        metrics.gitlabRequests.inc({ method, status: timedOut ? 'timeout' : 'unanswered' });
        const error = fail(timedOut ? `no answer within ${options.timeoutMs} ms` : `no answer (${(err as Error).message})`, undefined, true);
        if (closing.signal.aborted || callerSignal?.aborted || attempt >= policy.maxAttempts) throw error;
        log.debug({ path, attempt, err: error.message }, 'GitLab request failed; retrying');
        await sleep(backoffMs(attempt), closing.signal).catch(() => {});
        continue;
      }
      metrics.gitlabRequests.inc({ method, status: String(response.status) });
      if (response.ok) {
        return { body: await parseBody(response, request.asStream === true), headers: Object.fromEntries(response.headers.entries()), status: response.status };
      }
      const text = await response.text().catch(() => '');
      const retryAfterMs = parseRetryAfter(response.headers.get('retry-after'));
      if (response.status === 429) bucket.pauseFor(retryAfterMs ?? backoffMs(attempt));
      const retryable = policy.retryStatus(response.status);
      const said = excerpt(text, response.headers.get('content-type'));
      const error = fail(`${response.status}${said ? ` ${said}` : ''}`, response.status, retryable, retryAfterMs, said);
      const wait = retryAfterMs ?? backoffMs(attempt);
      if (!retryable || attempt >= policy.maxAttempts || wait > policy.maxRetryDelayMs) throw error;
      log.debug({ path, attempt, status: response.status, waitMs: Math.round(wait) }, 'GitLab answered with a transient error; retrying');
      await sleep(wait, closing.signal).catch(() => {});
    }
  }

  const requesterFn: (resourceOptions: ResourceOptions) => RequesterType = createRequesterFn(
    async (_service, requestOptions) => requestOptions,
    // gitbeaker's types want its own response body union; ours is the same at run time.
    send as never,
  );
  const instances = new Map<Resource<unknown>, unknown>();
  const api: GitLabApi = {
    resource<T>(Ctor: Resource<T>): T {
      let instance = instances.get(Ctor) as T | undefined;
      if (!instance) {
        instance = new Ctor({
          host: options.url,
          token: options.token,
          requesterFn,
          // Timeouts are per attempt, in `send`; gitbeaker's would count the waits too.
          queryTimeout: null,
          rateLimits: {},
        });
        instances.set(Ctor, instance);
      }
      return instance;
    },
    get commits() {
      return api.resource(Commits<false>);
    },
    get projects() {
      return api.resource(Projects<false>);
    },
    get groups() {
      return api.resource(Groups<false>);
    },
    get repositoryFiles() {
      return api.resource(RepositoryFiles<false>);
    },
    get deployTokens() {
      return api.resource(DeployTokens<false>);
    },
    withPolicy: (changes) => build(shared, { ...policy, ...changes }, closing.signal),
    close: () => own.abort(new Error('GitLab client closed')),
  };
  return api;
}

export function createGitLabApi(options: GitLabApiOptions, policy: Partial<RetryPolicy> = {}): GitLabApi {
  const shared: Shared = { options, bucket: new TokenBucket(options.requestsPerSecond, options.burst) };
  return build(shared, { ...DEFAULT_POLICY, ...policy });
}
