/**
 * Every row of the contract's table for POST /webhooks/gitlab, for every fixture, on Postgres and
 * on the embedded default. (503 is in outage.test.ts: it needs a proxy in front of the store.)
 */
import { describe, expect, test } from 'vitest';
import { useGateway } from '../support/gateway.js';
import {
  FIXTURE_CASES,
  MODES,
  edited,
  newKey,
  newSigningKey,
  paddedTo,
  postRaw,
  signedHeaders,
  without,
  readJson,
} from './support/webhooks.js';

const MAX_BODY = 1_048_576; // the default KASGATE_MAX_BODY_BYTES
const signingKey = newSigningKey();

describe.each(MODES)('POST /webhooks/gitlab on $mode', ({ options }) => {
  const gw = useGateway({ ...options, env: { KASGATE_WEBHOOK_SIGNING_KEYS: signingKey } });

  const tokenHeaders = (event: string, key?: string) => ({
    'content-type': 'application/json',
    'x-gitlab-token': gw.webhookSecret,
    'x-gitlab-event': event,
    ...(key ? { 'idempotency-key': key } : {}),
  });

  async function loggedEvent(projectId: number, eventId: string) {
    const { status, body } = await gw.admin('GET', `/events?project=${projectId}&limit=1000`);
    expect(status).toBe(200);
    return (body.events as { id: string }[]).filter((e) => e.id === eventId);
  }

  describe.each(FIXTURE_CASES)('$name fixture ($event)', (fx) => {
    test('202 stores it; the redelivery is 202 duplicate with the first eventId and no second event', async () => {
      const key = newKey();
      const first = await postRaw(gw, fx.raw, tokenHeaders(fx.event, key));
      expect(first.status).toBe(202);
      const accepted = await readJson(first);
      expect(accepted).toEqual({ status: 'accepted', eventId: expect.stringMatching(/^\d+$/), eventIds: [accepted.eventId], duplicate: false });

      const again = await postRaw(gw, fx.raw, tokenHeaders(fx.event, key));
      expect(again.status).toBe(202);
      expect(await readJson(again)).toEqual({ status: 'accepted', eventId: accepted.eventId, eventIds: [accepted.eventId], duplicate: true });

      const { body } = await gw.admin('GET', `/events?project=${fx.expected.projectId}&limit=1000`);
      const stored = (body.events as { id: string }[]).filter((e) => Number(e.id) >= Number(accepted.eventId));
      expect(stored).toEqual([expect.objectContaining({ id: accepted.eventId, ...fx.expected, deliveredCount: 0 })]);
    });

    test('202 with a valid Standard Webhooks signature instead of the token', async () => {
      const res = await postRaw(gw, fx.raw, signedHeaders(signingKey, fx.raw, { event: fx.event }));
      expect(res.status).toBe(202);
      const { eventId } = await readJson(res);
      expect(await loggedEvent(fx.expected.projectId, eventId)).toHaveLength(1);
    });

    test('401 for a missing or wrong token, and a wrong-key or stale signature; nothing stored', async () => {
      const { body: before } = await gw.admin('GET', `/events?project=${fx.expected.projectId}&limit=1000`);
      const attempts: [string, Record<string, string>, string][] = [
        ['no credentials', { 'content-type': 'application/json', 'x-gitlab-event': fx.event }, 'missing_credentials'],
        ['wrong token', { ...tokenHeaders(fx.event), 'x-gitlab-token': `${gw.webhookSecret}x` }, 'invalid_token'],
        ['empty token', { ...tokenHeaders(fx.event), 'x-gitlab-token': '' }, 'invalid_token'],
        ['signature by another key', signedHeaders(newSigningKey(), fx.raw, { event: fx.event }), 'invalid_signature'],
        [
          'signature 6 minutes old',
          signedHeaders(signingKey, fx.raw, { event: fx.event, timestamp: Math.floor(Date.now() / 1000) - 360 }),
          'stale_signature',
        ],
      ];
      for (const [label, headers, code] of attempts) {
        const res = await postRaw(gw, fx.raw, headers);
        expect({ label, status: res.status, body: await readJson(res) }).toEqual({
          label,
          status: 401,
          body: { error: { code, message: expect.any(String) } },
        });
      }
      const { body: after } = await gw.admin('GET', `/events?project=${fx.expected.projectId}&limit=1000`);
      expect(after.events).toHaveLength(before.events.length);
    });

    test.each(['project.path_with_namespace', 'ref', 'after'])('400 naming %s when it is missing', async (field) => {
      const res = await postRaw(gw, without(fx.raw, field), tokenHeaders(fx.event, newKey()));
      expect(res.status).toBe(400);
      const { error } = await readJson(res);
      expect(error.code).toBe('invalid_payload');
      expect(error.message).toContain(field);
    });

    test('400 when the body is not JSON, or not an object', async () => {
      for (const body of ['{"ref": "refs/heads/main"', 'not json', '[1,2]', '"push"', '42', 'null']) {
        const res = await postRaw(gw, body, tokenHeaders(fx.event, newKey()));
        expect({ body, status: res.status, answer: await readJson(res) }).toEqual({
          body,
          status: 400,
          answer: { error: { code: expect.stringMatching(/^invalid_(json|body)$/), message: expect.stringMatching(/^body: /) } },
        });
      }
    });

    test('413 one byte over KASGATE_MAX_BODY_BYTES; 202 at exactly the limit', async () => {
      const over = await postRaw(gw, paddedTo(fx.raw, MAX_BODY + 1), tokenHeaders(fx.event, newKey()));
      expect(over.status).toBe(413);
      expect(await readJson(over)).toEqual({
        error: { code: 'body_too_large', message: 'body: larger than the 1048576-byte (1 MiB) limit' },
      });

      const atLimit = await postRaw(gw, paddedTo(fx.raw, MAX_BODY), tokenHeaders(fx.event, newKey()));
      expect(atLimit.status).toBe(202);
    });
  });

  test('413 for a streamed (chunked) body over the limit, which has no Content-Length to check up front', async () => {
    const chunk = Buffer.alloc(64 * 1024, 0x20);
    let sent = 0;
    const stream = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent > MAX_BODY) return controller.close();
        sent += chunk.length;
        controller.enqueue(chunk);
      },
    });
    const res = await fetch(`${gw.url}/webhooks/gitlab`, {
      method: 'POST',
      headers: tokenHeaders('Push Hook', newKey()),
      body: stream,
      duplex: 'half',
    } as RequestInit);
    expect(res.status).toBe(413);
  });

  test.each([
    ['Merge Request Hook', edited(FIXTURE_CASES[0]!.raw, (b) => (b.object_kind = b.event_name = 'merge_request'))],
    ['Pipeline Hook', JSON.stringify({ object_kind: 'pipeline', object_attributes: { id: 1, status: 'failed' } })],
    ['Pipeline Hook', JSON.stringify({ object_kind: 'pipeline', object_attributes: { id: 2, status: 'running' } })],
    ['System Hook', JSON.stringify({ event_name: 'project_create', name: 'x', path_with_namespace: 'g/x', project_id: 9 })],
    [
      'System Hook',
      edited(FIXTURE_CASES[2]!.raw, (b) => {
        b.event_name = 'repository_update';
        b.changes = [{ before: b.before, after: b.after, ref: 'refs/merge-requests/1/head' }];
      }),
    ],
    ['System Hook', JSON.stringify({ event_name: 'user_create', username: 'u' })],
  ])('200 ignored for %s %#, with a reason and nothing stored', async (event, body) => {
    const { body: before } = await gw.admin('GET', '/events?limit=1000');
    const res = await postRaw(gw, body, tokenHeaders(event, newKey()));
    expect(res.status).toBe(200);
    expect(await readJson(res)).toEqual({ status: 'ignored', reason: expect.stringMatching(/\S/) });
    const { body: after } = await gw.admin('GET', '/events?limit=1000');
    expect(after.events).toHaveLength(before.events.length);
  });

  test('an ignored kind still needs the secret: 401 first', async () => {
    const res = await postRaw(gw, '{"object_kind":"merge_request"}', {
      'content-type': 'application/json',
      'x-gitlab-event': 'Merge Request Hook',
    });
    expect(res.status).toBe(401);
  });
});
