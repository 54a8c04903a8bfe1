/**
 * Webhook authentication, over the raw body bytes:
 *  - `X-Gitlab-Token` equal to one of the configured secrets (a list, for rotation), or
 *  - a Standard Webhooks signature (GitLab's signing token): `webhook-id`, `webhook-timestamp`
 *    within 5 minutes, `webhook-signature: v1,<base64 HMAC-SHA256("id.timestamp.body")>`,
 *    possibly several, space-separated.
 * Every comparison runs in constant time over fixed-length digests.
 */
import { createHmac } from 'node:crypto';
import { header } from '../http/json-body.js';
import { digest, matchesAny, secretSet } from '../http/secret-match.js';

export const SIGNATURE_TOLERANCE_SECONDS = 5 * 60;

export type Verdict = { ok: true; method: 'token' | 'signature' } | { ok: false; code: string; message: string };

export interface WebhookVerifier {
  verify(headers: Record<string, string | string[] | undefined>, rawBody: Buffer, nowMs?: number): Verdict;
}

export function createWebhookVerifier(secrets: string[], signingKeys: string[]): WebhookVerifier {
  const secretTokens = secretSet(secrets);
  const keys = signingKeys.map((k) => Buffer.from(k.slice('whsec_'.length), 'base64'));

  function verifySignature(id: string, timestamp: string, signatures: string, body: Buffer, nowMs: number): Verdict {
    if (keys.length === 0) return { ok: false, code: 'invalid_signature', message: 'no webhook signing key is configured' };
    if (!/^\d{1,12}$/.test(timestamp)) {
      return { ok: false, code: 'invalid_signature', message: 'webhook-timestamp is not a Unix timestamp' };
    }
    if (Math.abs(nowMs / 1000 - Number(timestamp)) > SIGNATURE_TOLERANCE_SECONDS) {
      return { ok: false, code: 'stale_signature', message: 'webhook-timestamp is more than 5 minutes away from now' };
    }
    const presented = signatures
      .split(' ')
      .filter((s) => s.startsWith('v1,'))
      .map((s) => digest(s.slice(3)));
    const expected = keys.map((key) =>
      digest(
        createHmac('sha256', key)
          .update(`${id}.${timestamp}.`)
          .update(body)
          .digest('base64'),
      ),
    );
    const ok = presented.some((p) => matchesAny(p, expected));
    return ok ? { ok: true, method: 'signature' } : { ok: false, code: 'invalid_signature', message: 'webhook-signature does not match' };
  }

  return {
    verify(headers, rawBody, nowMs = Date.now()) {
      const token = header(headers, 'x-gitlab-token');
      if (token !== undefined && secretTokens.has(token)) return { ok: true, method: 'token' };
      const id = header(headers, 'webhook-id');
      const timestamp = header(headers, 'webhook-timestamp');
      const signature = header(headers, 'webhook-signature');
      if (id !== undefined && timestamp !== undefined && signature !== undefined) {
        return verifySignature(id, timestamp, signature, rawBody, nowMs);
      }
      if (token !== undefined) return { ok: false, code: 'invalid_token', message: 'X-Gitlab-Token does not match a configured secret' };
      return {
        ok: false,
        code: 'missing_credentials',
        message: 'send X-Gitlab-Token (the hook secret) or a webhook-signature (the signing token)',
      };
    },
  };
}
