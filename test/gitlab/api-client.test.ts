/** The shared GitLab API client against the GitLab stand-in: auth, errors classified, retries, Retry-After, timeouts, the rate limit. */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { createGitLabApi, type GitLabApi, type RetryPolicy } from '../../src/gitlab/api/client.js';
import { GitLabApiError, parseRetryAfter } from '../../src/gitlab/api/errors.js';
import { TokenBucket } from '../../src/gitlab/api/rate-limiter.js';
import { createLogger } from '../../src/log.js';
import { createMetrics } from '../../src/metrics.js';
import { startFakeGitLab, type FakeGitLab } from '../support/fake-gitlab.js';

const SHA = 'c'.repeat(40);
let gitlab: FakeGitLab;
beforeAll(async () => {
  gitlab = await startFakeGitLab();
  gitlab.addProject({ id: 7, path: 'group/app', defaultBranch: 'main' });
});
afterAll(() => gitlab.close());

function client(options: { token?: string; timeoutMs?: number; perSecond?: number; burst?: number } = {}, policy: Partial<RetryPolicy> = {}): GitLabApi {
  return createGitLabApi(
    {
      url: gitlab.url,
      token: options.token ?? gitlab.token,
      requestsPerSecond: options.perSecond ?? 1000,
      burst: options.burst ?? 1000,
      timeoutMs: options.timeoutMs ?? 2000,
      log: createLogger('silent'),
      metrics: createMetrics(),
    },
    policy,
  );
}

async function failure(promise: Promise<unknown>): Promise<GitLabApiError> {
  const err: unknown = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(GitLabApiError);
  return err as GitLabApiError;
}

const requestsTo = (sha: string) => gitlab.requests.filter((r) => r.path.endsWith(`/statuses/${sha}`));

describe('commit statuses through gitbeaker on our requester', () => {
  test('posts with PRIVATE-TOKEN to the project by path (URL-encoded) or id, with GitLab parameter names', async () => {
    const api = client();
    const answer = await api.commits.editStatus('group/app', SHA, 'running', {
      name: 'kasgate/a/Kustomization/ns/x',
      ref: 'main',
      targetUrl: 'https://kasgate.example.com/ui/events/1',
      description: 'waiting',
    });
    expect(answer).toMatchObject({ status: 'running', name: 'kasgate/a/Kustomization/ns/x', target_url: 'https://kasgate.example.com/ui/events/1' });
    await api.commits.editStatus(7, SHA, 'success', { name: 'kasgate/a/Kustomization/ns/x', ref: 'main' });
    expect(gitlab.statusesOf(SHA).map((s) => [s.projectId, s.state, s.ref, s.description])).toEqual([
      [7, 'running', 'main', 'waiting'],
      [7, 'success', 'main', null],
    ]);
    expect(requestsTo(SHA).map((r) => [r.path, r.auth])).toEqual([
      [`/api/v4/projects/group%2Fapp/statuses/${SHA}`, 'private-token'],
      [`/api/v4/projects/7/statuses/${SHA}`, 'private-token'],
    ]);
  });

  test('a wrong token is 401, an unknown project 404, a refused transition 400: permanent, one request each, no token in the message', async () => {
    const sha = 'd'.repeat(40);
    const wrong = await failure(client({ token: 'glpat-wrong' }).commits.editStatus(7, sha, 'running'));
    expect(wrong.details).toMatchObject({ status: 401, retryable: false, body: '401 Unauthorized', path: `/projects/7/statuses/${sha}` });
    expect(wrong.message).not.toContain('glpat-wrong');
    const unknown = await failure(client().commits.editStatus('group/none', sha, 'running'));
    expect(unknown.details).toMatchObject({ status: 404, retryable: false, body: '404 Project Not Found' });
    const api = client();
    await api.commits.editStatus(7, sha, 'running', { name: 'twice' });
    const twice = await failure(api.commits.editStatus(7, sha, 'running', { name: 'twice' }));
    expect(twice.details).toMatchObject({ status: 400, retryable: false, body: 'Cannot transition status via :run from :running' });
    expect(requestsTo(sha)).toHaveLength(4);
  });

  test('429 with Retry-After: the retry waits that long, then posts once; the pause holds other requests too', async () => {
    const sha = 'e'.repeat(40);
    gitlab.script({ status: 429, headers: { 'retry-after': '1' }, body: { message: 'Retry later' }, match: (_m, p) => p.endsWith(sha) });
    const api = client();
    const started = Date.now();
    const [first, other] = await Promise.all([
      api.commits.editStatus(7, sha, 'running', { name: 'n' }),
      new Promise((r) => setTimeout(r, 100)).then(() => api.projects.show(7)),
    ]);
    expect(first).toMatchObject({ status: 'running' });
    expect(other).toMatchObject({ path_with_namespace: 'group/app' });
    const attempts = requestsTo(sha);
    expect(attempts.map((r) => r.status)).toEqual([429, 201]);
    expect(attempts[1]!.at - attempts[0]!.at).toBeGreaterThanOrEqual(950);
    const show = gitlab.requests.findLast((r) => r.path === '/api/v4/projects/7')!;
    expect(show.at - started).toBeGreaterThanOrEqual(950);
    expect(gitlab.statusesOf(sha)).toHaveLength(1);
  });

  test('5xx is retried with backoff until it works; with one attempt it fails retryable, saying Retry-After', async () => {
    const sha = 'f'.repeat(40);
    gitlab.script({ status: 502, times: 2, match: (_m, p) => p.endsWith(sha) });
    await client().commits.editStatus(7, sha, 'running', { name: 'n' });
    expect(requestsTo(sha).map((r) => r.status)).toEqual([502, 502, 201]);

    gitlab.script({ status: 503, headers: { 'retry-after': '120' }, match: (_m, p) => p.endsWith(sha) });
    const once = await failure(client({}, { maxAttempts: 1 }).commits.editStatus(7, sha, 'success', { name: 'n' }));
    expect(once.details).toMatchObject({ status: 503, retryable: true, retryAfterMs: 120_000 });
    // A Retry-After longer than the policy waits for is not waited for in the call.
    gitlab.script({ status: 429, headers: { 'retry-after': '120' }, match: (_m, p) => p.endsWith(sha) });
    const started = Date.now();
    const long = await failure(client().commits.editStatus(7, sha, 'success', { name: 'n' }));
    expect(long.details).toMatchObject({ status: 429, retryable: true, retryAfterMs: 120_000 });
    expect(Date.now() - started).toBeLessThan(1000);
  });

  test('a GitLab that hangs: each attempt times out, the error is retryable with no status; close() aborts at once', async () => {
    gitlab.hang = true;
    try {
      const started = Date.now();
      const timedOut = await failure(client({ timeoutMs: 200 }, { maxAttempts: 2 }).projects.show(7));
      expect(timedOut.details).toMatchObject({ status: undefined, retryable: true });
      expect(timedOut.message).toMatch(/no answer within 200 ms/);
      expect(Date.now() - started).toBeGreaterThanOrEqual(400);
      expect(Date.now() - started).toBeLessThan(2500);

      const api = client({ timeoutMs: 30_000 });
      const derived = api.withPolicy({ maxAttempts: 1 });
      const pending = failure(derived.projects.show(7));
      await new Promise((r) => setTimeout(r, 100));
      const closedAt = Date.now();
      api.close();
      expect((await pending).details.retryable).toBe(true);
      expect(Date.now() - closedAt).toBeLessThan(500);
    } finally {
      gitlab.release();
    }
  });

  test('the rate limit: a burst goes at once, the rest at the configured rate', async () => {
    const api = client({ perSecond: 10, burst: 3 });
    const started = Date.now();
    await Promise.all(Array.from({ length: 8 }, () => api.projects.show(7)));
    // 3 at once, then 5 more at 10/s.
    expect(Date.now() - started).toBeGreaterThanOrEqual(450);
  });
});

test('parseRetryAfter: seconds or an HTTP date', () => {
  expect(parseRetryAfter('3')).toBe(3000);
  expect(parseRetryAfter(new Date(Date.now() + 5000).toUTCString(), Date.now())).toBeGreaterThan(3000);
  expect(parseRetryAfter('soon')).toBeUndefined();
  expect(parseRetryAfter(undefined)).toBeUndefined();
});

test('TokenBucket: reservations beyond the burst wait their turn; a pause delays everyone', () => {
  let now = 0;
  const bucket = new TokenBucket(2, 2, () => now);
  expect([bucket.reserve(), bucket.reserve(), bucket.reserve(), bucket.reserve()]).toEqual([0, 0, 500, 1000]);
  now = 3000;
  bucket.pauseFor(1500);
  expect(bucket.reserve()).toBe(1500);
});
