/** /metrics after a few webhooks: counts by kind and outcome, and the ingest duration histogram. */
import { expect, test } from 'vitest';
import { useGateway } from '../support/gateway.js';
import { fixtures, nextProjectId, pushBody } from '../support/fixtures.js';
import { newKey, postRaw } from './support/webhooks.js';

const gw = useGateway();

/** Every sample of a metric: its labels and value. */
async function samples(name: string): Promise<{ labels: Record<string, string>; value: number }[]> {
  const text = await (await fetch(`${gw.url}/metrics`)).text();
  return text
    .split('\n')
    .filter((line) => line.startsWith(`${name}{`) || line.startsWith(`${name} `))
    .map((line) => {
      const match = /^[^{\s]+(?:\{(.*)\})?\s+(\S+)$/.exec(line)!;
      const labels = Object.fromEntries([...(match[1] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1]!, m[2]!]));
      return { labels, value: Number(match[2]) };
    });
}

async function webhookCount(kind: string, outcome: string): Promise<number> {
  const all = await samples('kasgate_webhooks_total');
  return all.find((s) => s.labels.kind === kind && s.labels.outcome === outcome)?.value ?? 0;
}

test('webhooks are counted by kind and outcome, and stored ones timed', async () => {
  const key = newKey();
  const deliver = (body: object | string, headers: Record<string, string> = {}) => gw.postWebhook(body, headers);
  expect((await deliver(pushBody({ projectId: nextProjectId() }), { 'idempotency-key': key })).status).toBe(202);
  expect((await deliver(pushBody({ projectId: nextProjectId() }), { 'idempotency-key': key })).status).toBe(202);
  expect((await deliver(pushBody({ projectId: nextProjectId() }))).status).toBe(202);
  expect((await postRaw(gw, fixtures.tagPush.raw, {
    'content-type': 'application/json',
    'x-gitlab-token': gw.webhookSecret,
    'x-gitlab-event': 'Tag Push Hook',
  })).status).toBe(202);
  expect((await deliver({ object_kind: 'merge_request' }, { 'x-gitlab-event': 'Merge Request Hook' })).status).toBe(200);
  expect((await deliver(pushBody(), { 'x-gitlab-token': 'wrong' })).status).toBe(401);
  expect((await deliver(pushBody({ ref: '' }))).status).toBe(400);
  expect((await deliver(Buffer.alloc(1_048_577, 0x20))).status).toBe(413);

  expect(await webhookCount('push', 'accepted')).toBe(2);
  expect(await webhookCount('push', 'duplicate')).toBe(1);
  expect(await webhookCount('tag_push', 'accepted')).toBe(1);
  expect(await webhookCount('other', 'ignored')).toBe(1);
  expect(await webhookCount('unknown', 'invalid_token')).toBe(1);
  expect(await webhookCount('push', 'invalid_payload')).toBe(1);
  expect(await webhookCount('unknown', 'body_too_large')).toBe(1);

  // Every stored push (new or duplicate) is timed, from arrival to answer.
  const histogram = await samples('kasgate_webhook_ingest_duration_seconds_count');
  expect(histogram).toEqual([{ labels: {}, value: 4 }]);
  const buckets = await samples('kasgate_webhook_ingest_duration_seconds_bucket');
  expect(buckets.find((b) => b.labels.le === '+Inf')?.value).toBe(4);
  const [sum] = await samples('kasgate_webhook_ingest_duration_seconds_sum');
  expect(sum!.value).toBeGreaterThan(0);
});
