/**
 * GitLab's signing token, in the Standard Webhooks form, verified over the exact bytes received;
 * keys `whsec_<base64>` from KASGATE_WEBHOOK_SIGNING_KEYS (several, for rotation).
 */
import { describe, expect, test } from 'vitest';
import { startGateway, useGateway } from '../support/gateway.js';
import { fixtures } from '../support/fixtures.js';
import { newKey, newSigningKey, postRaw, signature, signedHeaders, readJson } from './support/webhooks.js';

const currentKey = newSigningKey();
const previousKey = newSigningKey();
const raw = fixtures.push.raw; // pretty-printed, as the file has it
const now = () => Math.floor(Date.now() / 1000);

const gw = useGateway({ env: { KASGATE_WEBHOOK_SIGNING_KEYS: `${currentKey}, ${previousKey}` } });

/** Status and error code of an answer. */
async function answer(res: Response): Promise<{ status: number; code: string | undefined }> {
  const body = await readJson(res);
  return { status: res.status, code: body?.error?.code };
}

describe('accepted', () => {
  test('a valid signature by the current key', async () => {
    const res = await postRaw(gw, raw, signedHeaders(currentKey, raw));
    expect(res.status).toBe(202);
  });

  test('a valid signature by the other configured key (rotation)', async () => {
    const res = await postRaw(gw, raw, signedHeaders(previousKey, raw));
    expect(res.status).toBe(202);
  });

  test('several space-separated signatures, one of them valid, in any position', async () => {
    const id = `msg_${newKey()}`;
    const ts = now();
    const good = signature(currentKey, id, ts, raw);
    const wrong = signature(newSigningKey(), id, ts, raw);
    for (const list of [`${good} ${wrong}`, `${wrong} ${good}`, `${wrong} v2,abc ${good} v1,`]) {
      const headers = { ...signedHeaders(currentKey, raw, { id, timestamp: ts }), 'webhook-signature': list };
      const res = await postRaw(gw, raw, headers);
      expect({ list, status: res.status }).toEqual({ list, status: 202 });
    }
  });

  test('a timestamp 4 minutes old (inside the 5-minute window)', async () => {
    const res = await postRaw(gw, raw, signedHeaders(currentKey, raw, { timestamp: now() - 240 }));
    expect(res.status).toBe(202);
  });
});

describe('refused with 401, nothing stored', () => {
  test('a signature by a key that is not configured', async () => {
    expect(await answer(await postRaw(gw, raw, signedHeaders(newSigningKey(), raw)))).toEqual({ status: 401, code: 'invalid_signature' });
  });

  test('several signatures, none valid', async () => {
    const id = `msg_${newKey()}`;
    const ts = now();
    const list = `${signature(newSigningKey(), id, ts, raw)} ${signature(newSigningKey(), id, ts, raw)}`;
    const headers = { ...signedHeaders(currentKey, raw, { id, timestamp: ts }), 'webhook-signature': list };
    expect(await answer(await postRaw(gw, raw, headers))).toEqual({ status: 401, code: 'invalid_signature' });
  });

  test('a timestamp more than 5 minutes old, or ahead', async () => {
    expect(await answer(await postRaw(gw, raw, signedHeaders(currentKey, raw, { timestamp: now() - 301 - 5 })))).toEqual({ status: 401, code: 'stale_signature' });
    expect(await answer(await postRaw(gw, raw, signedHeaders(currentKey, raw, { timestamp: now() + 360 })))).toEqual({ status: 401, code: 'stale_signature' });
  });

  test('a timestamp that is not a Unix time', async () => {
    const headers = { ...signedHeaders(currentKey, raw), 'webhook-timestamp': '2024-11-24T00:00:00Z' };
    expect(await answer(await postRaw(gw, raw, headers))).toEqual({ status: 401, code: 'invalid_signature' });
  });

  test('the body changed after signing, even only its whitespace', async () => {
    const headers = signedHeaders(currentKey, raw);
    const reindented = JSON.stringify(JSON.parse(raw.toString()), null, 4);
    expect(await answer(await postRaw(gw, reindented, headers))).toEqual({ status: 401, code: 'invalid_signature' });
    expect(await answer(await postRaw(gw, Buffer.concat([raw, Buffer.from('\n')]), headers))).toEqual({ status: 401, code: 'invalid_signature' });
  });

  test('a signature made for another webhook-id or timestamp', async () => {
    const signed = signedHeaders(currentKey, raw);
    expect(await answer(await postRaw(gw, raw, { ...signed, 'webhook-id': `msg_${newKey()}` }))).toEqual({ status: 401, code: 'invalid_signature' });
    const ts = Number(signed['webhook-timestamp']) - 1;
    expect(await answer(await postRaw(gw, raw, { ...signed, 'webhook-timestamp': String(ts) }))).toEqual({ status: 401, code: 'invalid_signature' });
  });

  test('a signature without its v1 scheme, or with only part of the headers', async () => {
    const signed = signedHeaders(currentKey, raw);
    expect(await answer(await postRaw(gw, raw, { ...signed, 'webhook-signature': signed['webhook-signature']!.slice(3) }))).toEqual({ status: 401, code: 'invalid_signature' });
    const { 'webhook-timestamp': _, ...noTimestamp } = signed;
    expect(await answer(await postRaw(gw, raw, noTimestamp))).toEqual({ status: 401, code: 'missing_credentials' });
  });

  test('none of the refused deliveries reached the log', async () => {
    // The deliveries of the "accepted" block; the three that share one webhook-id are one event.
    const accepted = 1 + 1 + 1 + 1;
    const { body } = await gw.admin('GET', '/events?limit=1000');
    expect(body.events).toHaveLength(accepted);
  });
});

test('a signing key that is not whsec_<base64> stops the start, without printing the key', async () => {
  const bad = 'not-a-whsec-key-0123456789';
  const error = await startGateway({ env: { KASGATE_WEBHOOK_SIGNING_KEYS: bad } }).then(
    async (unexpected) => {
      await unexpected.close();
      return undefined;
    },
    (err: Error) => err,
  );
  expect(error?.message).toContain('KASGATE_WEBHOOK_SIGNING_KEYS');
  expect(error?.message).not.toContain(bad);
});
