/**
 * Hostile bodies, from a caller that holds the secret: each gets a 4xx with the error body, never
 * a 5xx, and the gateway keeps serving (on both stores).
 */
import { describe, expect, test } from 'vitest';
import { useGateway } from '../support/gateway.js';
import { fixtures, nextProjectId, pushBody } from '../support/fixtures.js';
import { MODES, edited, newKey, postRaw, readJson } from './support/webhooks.js';

const KB100 = 100 * 1024;
const raw = fixtures.push.raw.toString();

/** The push fixture's JSON text with `"ref":"…"` replaced by arbitrary JSON text. */
const withRef = (refJson: string) => edited(fixtures.push.raw, (b) => (b.ref = '__REF__')).replace('"__REF__"', refJson);

/** A valid push but for three bytes in its ref that are not UTF-8. */
const [beforeBad, afterBad] = withRef('"refs/heads/@@"').split('@@') as [string, string];
const invalidUtf8 = Buffer.concat([Buffer.from(beforeBad), Buffer.from([0xc3, 0x28, 0xff]), Buffer.from(afterBad)]);

// [label, body, content-type, expected status, what the message must start with]
const CASES: [string, string | Buffer, string, number, string?][] = [
  ['an empty body', '', 'application/json', 400, 'body'],
  ['null', 'null', 'application/json', 400],
  ['an array', '[]', 'application/json', 400],
  ['an array of pushes', `[${raw}]`, 'application/json', 400],
  ['a string', '"refs/heads/main"', 'application/json', 400],
  ['truncated JSON', raw.slice(0, raw.length / 2), 'application/json', 400],
  ['5,000 levels of nested arrays', `${'['.repeat(5000)}${']'.repeat(5000)}`, 'application/json', 400],
  ['5,000 levels of nested objects', `${'{"a":'.repeat(5000)}1${'}'.repeat(5000)}`, 'application/json', 400],
  ['5,000 levels of nesting where ref should be', withRef(`${'{"a":'.repeat(5000)}1${'}'.repeat(5000)}`), 'application/json', 400, 'ref'],
  ['150,000 levels of nesting (just under the body limit)', `${'{"a":'.repeat(150_000)}1${'}'.repeat(150_000)}`, 'application/json', 400, 'ref'],
  ['a push hidden under __proto__', `{"__proto__":${raw}}`, 'application/json', 400, 'ref'],
  ['ref as an object', withRef('{"name":"refs/heads/main"}'), 'application/json', 400, 'ref'],
  ['ref as a number', withRef('42'), 'application/json', 400, 'ref'],
  ['a 100 KB ref', withRef(JSON.stringify(`refs/heads/${'r'.repeat(KB100)}`)), 'application/json', 400, 'ref'],
  [
    'a 100 KB project path',
    edited(fixtures.push.raw, (b) => (b.project.path_with_namespace = `g/${'p'.repeat(KB100)}`)),
    'application/json',
    400,
    'project.path_with_namespace',
  ],
  ['a 100 KB after', edited(fixtures.push.raw, (b) => (b.after = 'f'.repeat(KB100))), 'application/json', 400, 'after'],
  ['a NUL character in ref', withRef('"refs/heads/a\\u0000b"'), 'application/json', 400, 'ref'],
  ['an unpaired surrogate in the path', edited(fixtures.push.raw, (b) => (b.project.path_with_namespace = 'g/\ud800x')), 'application/json', 400, 'project.path_with_namespace'],
  ['a project id past 2^53', edited(fixtures.push.raw, (b) => (b.project.id = 1e300)), 'application/json', 400, 'project.id'],
  ['a negative project id', edited(fixtures.push.raw, (b) => (b.project.id = -1)), 'application/json', 400, 'project.id'],
  ['invalid UTF-8', invalidUtf8, 'application/json', 400, 'body: not valid UTF-8'],
  ['a JSON body labelled text/plain', raw, 'text/plain', 415],
  ['a form-encoded body', 'ref=refs%2Fheads%2Fmain', 'application/x-www-form-urlencoded', 415],
  ['a multipart body', '--x\r\nContent-Disposition: form-data; name="a"\r\n\r\n1\r\n--x--\r\n', 'multipart/form-data; boundary=x', 415],
];
const HOSTILE = CASES.map(([label, body, contentType, status, field]) => ({ label, body, contentType, status, field }));

const escapeRegExp = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

describe.each(MODES)('hostile bodies on $mode', ({ options }) => {
  const gw = useGateway(options);

  test.each(HOSTILE)('$label → $status', async ({ body, contentType, status, field }) => {
    const res = await postRaw(gw, body, {
      'content-type': contentType,
      'x-gitlab-token': gw.webhookSecret,
      'x-gitlab-event': 'Push Hook',
      'idempotency-key': newKey(),
    });
    const messageStart = field === undefined ? '' : field.includes(':') ? field : `${field}:`;
    expect({ status: res.status, answer: await readJson(res) }).toEqual({
      status,
      answer: { error: { code: expect.stringMatching(/^[a-z_]+$/), message: expect.stringMatching(new RegExp(`^${escapeRegExp(messageStart)}`)) } },
    });
  });

  test('a missing Content-Type is 415', async () => {
    const res = await postRaw(gw, raw, { 'x-gitlab-token': gw.webhookSecret, 'x-gitlab-event': 'Push Hook' });
    expect(res.status).toBe(415);
  });

  test('a 100 KB commit message is fine (the body is read only for what kasgate uses): 202', async () => {
    const id = nextProjectId();
    const body = pushBody({ projectId: id });
    body.commits[0].message = 'm'.repeat(KB100);
    const res = await gw.postWebhook(body, { 'idempotency-key': newKey() });
    expect(res.status).toBe(202);
  });

  test('application/json with a charset, and a +json type, are JSON', async () => {
    for (const contentType of ['application/json; charset=utf-8', 'application/vnd.gitlab+json']) {
      const res = await gw.postWebhook(pushBody({ projectId: nextProjectId() }), { 'content-type': contentType });
      expect({ contentType, status: res.status }).toEqual({ contentType, status: 202 });
    }
  });

  test('after all of them at once, the gateway still serves: healthz, readyz and a real push', async () => {
    const answers = await Promise.all(
      HOSTILE.map(({ body, contentType }) =>
        postRaw(gw, body, { 'content-type': contentType, 'x-gitlab-token': gw.webhookSecret, 'x-gitlab-event': 'Push Hook' }).then((r) => r.status),
      ),
    );
    expect(answers).toEqual(HOSTILE.map(({ status }) => status));
    expect((await fetch(`${gw.url}/healthz`)).status).toBe(200);
    expect((await fetch(`${gw.url}/readyz`)).status).toBe(200);
    const res = await gw.postWebhook(pushBody({ projectId: nextProjectId() }));
    expect(res.status).toBe(202);
  });
});
