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
 * the paths (URL-encoding project paths), the JSON bodies and the auth header; the requests go
 * out on node:http keep-alive agents (transport.ts).
 */
import { createRequesterFn, type RequesterType, type ResourceOptions } from '@gitbeaker/requester-utils';
import { Commits, DeployTokens, Groups, Projects, RepositoryFiles } from '@gitbeaker/rest';
import type { Logger } from 'pino';
import type { Metrics } from '../../metrics.js';
import { GitLabApiError, isTransientStatus, parseRetryAfter } from './errors.js';
import { sleep, TokenBucket } from './rate-limiter.js';
import { send, TransportError, type Answer } from './transport.js';

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
  /** GitLab's state as the latest calls saw it: not ok from a call that gave up on 429/5xx/no answer until GitLab answers normally again. */
  health(): { ok: true } | { ok: false; message: string; since: string };
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

/** What gitbeaker expects of a body: JSON parsed, text as a string, else a Blob (204: null). */
function bodyOf(answer: Answer): unknown {
  if (answer.status === 204) return null;
  const type = (answer.headers['content-type'] ?? '').split(';')[0]!.trim();
  if (type === 'application/json') return answer.body.length === 0 ? {} : (JSON.parse(answer.body.toString('utf8')) ?? {});
  if (type.startsWith('text/')) return answer.body.toString('utf8');
  return new Blob([answer.body]);
}

type Transmitted = Answer & { stream?: ReadableStream<Uint8Array> | null };

/**
 * One request. JSON and form-encoded bodies go through node:http (transport.ts); multipart
 * uploads and streamed downloads (rare: files, archives) through fetch, which handles those shapes.
 */
async function transmit(url: URL, method: string, request: Record<string, unknown>, signal: AbortSignal, timeoutMs = 0): Promise<Transmitted> {
  const headers = (request.headers ?? {}) as Record<string, string>;
  const body = request.body;
  if (request.asStream !== true && (body === undefined || typeof body === 'string')) {
    return send(url, { method, headers, body, timeoutMs, signal });
  }
  let response: Response;
  try {
    response = await fetch(url, { method, headers, body: body as FormData | undefined, signal: AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)]) });
  } catch (err) {
    const name = (err as Error).name;
    throw new TransportError((err as Error).message, name === 'TimeoutError' ? 'timeout' : signal.aborted ? 'aborted' : 'network');
  }
  const answerHeaders = Object.fromEntries(response.headers.entries());
  if (request.asStream === true && response.ok) return { status: response.status, headers: answerHeaders, body: Buffer.alloc(0), stream: response.body };
  return { status: response.status, headers: answerHeaders, body: Buffer.from(await response.arrayBuffer()) };
}

interface Shared {
  options: GitLabApiOptions;
  bucket: TokenBucket;
  /** The latest call that gave up on GitLab's trouble (429, 5xx, no answer), until GitLab answers normally again. */
  trouble: { message: string; since: number } | undefined;
}

function build(shared: Shared, policy: RetryPolicy, parent?: AbortSignal): GitLabApi {
  const { options, bucket } = shared;
  // Closing this client aborts its requests; closing the one it came from aborts them too.
  const own = new AbortController();
  const closing = { signal: parent ? AbortSignal.any([parent, own.signal]) : own.signal };
  const { log, metrics } = options;

  function noteTrouble(message: string): void {
    shared.trouble = { message, since: shared.trouble?.since ?? Date.now() };
  }

  async function call(endpoint: string, request: Record<string, unknown>) {
    const method = String(request.method ?? 'GET');
    const prefix = String(request.prefixUrl);
    const url = new URL(endpoint, prefix.endsWith('/') ? prefix : `${prefix}/`);
    if (typeof request.searchParams === 'string') url.search = request.searchParams;
    const path = url.pathname.replace(/^.*?\/api\/v4\//, '/');
    const callerSignal = request.signal instanceof AbortSignal ? request.signal : undefined;
    // gitbeaker passes a signal only with a queryTimeout, which we never set; combine it if one comes.
    const signal = callerSignal ? AbortSignal.any([closing.signal, callerSignal]) : closing.signal;
    const fail = (message: string, status: number | undefined, retryable: boolean, retryAfterMs?: number, body?: string) =>
      new GitLabApiError(`GitLab ${method} ${path}: ${message}`, { method, path, status, retryable, retryAfterMs, body });

    for (let attempt = 1; ; attempt++) {
      if (closing.signal.aborted) throw fail('the client is closed', undefined, true);
      await bucket.take(closing.signal).catch(() => {
        throw fail('the client is closed', undefined, true);
      });
      let answer: Transmitted;
      try {
        answer = await transmit(url, method, request, signal, options.timeoutMs);
      } catch (err) {
        const reason = err instanceof TransportError ? err.reason : 'network';
        metrics.gitlabRequests.inc({ method, status: reason === 'timeout' ? 'timeout' : 'unanswered' });
        const error = fail(reason === 'timeout' ? `no answer within ${options.timeoutMs} ms` : `no answer (${(err as Error).message})`, undefined, true);
        if (signal.aborted || attempt >= policy.maxAttempts) {
          if (!closing.signal.aborted) noteTrouble(error.message);
          throw error;
        }
        log.debug({ path, attempt, err: error.message }, 'GitLab request failed; retrying');
        await sleep(backoffMs(attempt), closing.signal).catch(() => {});
        continue;
      }
      metrics.gitlabRequests.inc({ method, status: String(answer.status) });
      // A refused token is trouble too (every call fails the same way); other answers mean GitLab is fine.
      if (answer.status === 401) noteTrouble(`GitLab refuses the token (401 on ${method} ${path})`);
      else if (!isTransientStatus(answer.status)) shared.trouble = undefined;
      if (answer.status >= 200 && answer.status < 300) {
        return { body: answer.stream ?? bodyOf(answer), headers: answer.headers, status: answer.status };
      }
      const text = answer.body.toString('utf8');
      const retryAfterMs = parseRetryAfter(answer.headers['retry-after']);
      if (answer.status === 429) bucket.pauseFor(retryAfterMs ?? backoffMs(attempt));
      const retryable = policy.retryStatus(answer.status);
      const said = excerpt(text, answer.headers['content-type'] ?? null);
      const error = fail(`${answer.status}${said ? ` ${said}` : ''}`, answer.status, retryable, retryAfterMs, said);
      const wait = retryAfterMs ?? backoffMs(attempt);
      if (!retryable || attempt >= policy.maxAttempts || wait > policy.maxRetryDelayMs) {
        if (isTransientStatus(answer.status)) noteTrouble(error.message);
        throw error;
      }
      log.debug({ path, attempt, status: answer.status, waitMs: Math.round(wait) }, 'GitLab answered with a transient error; retrying');
      await sleep(wait, closing.signal).catch(() => {});
    }
  }

  const requesterFn: (resourceOptions: ResourceOptions) => RequesterType = createRequesterFn(
    async (_service, requestOptions) => requestOptions,
    // gitbeaker's types want its own response body union; ours is the same at run time.
    call as never,
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
    health() {
      const trouble = shared.trouble;
      return trouble ? { ok: false, message: trouble.message, since: new Date(trouble.since).toISOString() } : { ok: true };
    },
    withPolicy: (changes) => build(shared, { ...policy, ...changes }, closing.signal),
    close: () => own.abort(new Error('GitLab client closed')),
  };
  return api;
}

export function createGitLabApi(options: GitLabApiOptions, policy: Partial<RetryPolicy> = {}): GitLabApi {
  const shared: Shared = { options, bucket: new TokenBucket(options.requestsPerSecond, options.burst), trouble: undefined };
  return build(shared, { ...DEFAULT_POLICY, ...policy });
}
