/** Webhook helpers for the ingest tests: Standard Webhooks signing, fixture cases, raw posts. */
import { createHmac, randomBytes, randomUUID } from 'node:crypto';
import { fixtures, type FixtureName } from '../../support/fixtures.js';
import type { GatewayOptions, TestGateway } from '../../support/gateway.js';
import type { PushEvent } from '../../../src/events/event.js';

/** The two ways the suite runs a gateway: on the shared Postgres, and on the embedded default. */
export const MODES: { mode: string; options: GatewayOptions }[] = [
  { mode: 'postgres', options: {} },
  { mode: 'embedded', options: { embedded: true } },
];

/** A Standard Webhooks key, `whsec_<base64>`. */
export function newSigningKey(): string {
  return `whsec_${randomBytes(24).toString('base64')}`;
}

/** `v1,<base64 HMAC-SHA256("id.timestamp.body")>` under the given whsec_ key. */
export function signature(key: string, id: string, timestamp: number, body: Buffer | string): string {
  const secret = Buffer.from(key.slice('whsec_'.length), 'base64');
  const mac = createHmac('sha256', secret).update(`${id}.${timestamp}.`).update(body).digest('base64');
  return `v1,${mac}`;
}

/** Headers of a delivery signed with a GitLab signing token instead of X-Gitlab-Token. */
export function signedHeaders(
  key: string,
  body: Buffer | string,
  options: { id?: string; timestamp?: number; event?: string } = {},
): Record<string, string> {
  const id = options.id ?? `msg_${randomUUID()}`;
  const timestamp = options.timestamp ?? Math.floor(Date.now() / 1000);
  return {
    'content-type': 'application/json',
    'x-gitlab-event': options.event ?? 'Push Hook',
    'webhook-id': id,
    'webhook-timestamp': String(timestamp),
    'webhook-signature': signature(key, id, timestamp, body),
  };
}

/** POSTs exactly these bytes with exactly these headers (no default token or event). */
export function postRaw(gw: TestGateway, body: Buffer | string | undefined, headers: Record<string, string>): Promise<Response> {
  return fetch(`${gw.url}/webhooks/gitlab`, { method: 'POST', headers, body });
}

export interface FixtureCase {
  name: FixtureName;
  event: string;
  raw: Buffer;
  /** What the log should hold for it (GET /api/v1/events). */
  expected: Omit<PushEvent, 'receivedAt' | 'idempotencyKey'>;
}

const ZERO_SHA = '0'.repeat(40);

export const FIXTURE_CASES: FixtureCase[] = [
  {
    name: 'push',
    ...fixtures.push,
    expected: {
      kind: 'push',
      projectId: 15,
      projectPath: 'mike/diaspora',
      visibility: 20,
      defaultBranch: 'main',
      ref: 'refs/heads/main',
      before: '95790bf891e76fee5e1747ab589903a6a1f80f22',
      after: 'da1560886d4f094c3e6c9ef40349f7d38b5d27d7',
      checkoutSha: 'da1560886d4f094c3e6c9ef40349f7d38b5d27d7',
      userUsername: 'jsmith',
    },
  },
  {
    name: 'tagPush',
    ...fixtures.tagPush,
    expected: {
      kind: 'tag_push',
      projectId: 1,
      projectPath: 'jsmith/example',
      visibility: 0,
      defaultBranch: 'main',
      ref: 'refs/tags/v1.0.0',
      before: ZERO_SHA,
      after: '82b3d5ae55f7080f1e6022629cdb57bfae7cccc7',
      checkoutSha: '82b3d5ae55f7080f1e6022629cdb57bfae7cccc7',
      userUsername: 'jsmith',
    },
  },
  {
    name: 'systemPush',
    ...fixtures.systemPush,
    expected: {
      kind: 'push',
      projectId: 15,
      projectPath: 'mike/diaspora',
      visibility: 0,
      defaultBranch: 'master',
      ref: 'refs/heads/master',
      before: '95790bf891e76fee5e1747ab589903a6a1f80f22',
      after: 'da1560886d4f094c3e6c9ef40349f7d38b5d27d7',
      checkoutSha: 'da1560886d4f094c3e6c9ef40349f7d38b5d27d7',
      userUsername: null,
    },
  },
];

/** The fixture's body as an object, changed by `edit`, serialized again. */
export function edited(raw: Buffer, edit: (body: any) => void): string {
  const body = JSON.parse(raw.toString());
  edit(body);
  return JSON.stringify(body);
}

/** The fixture with one (dotted) field removed. */
export function without(raw: Buffer, field: string): string {
  return edited(raw, (body) => {
    const parts = field.split('.');
    const last = parts.pop()!;
    let at = body;
    for (const p of parts) at = at[p];
    delete at[last];
  });
}

/** The fixture padded with an ignored field to exactly `bytes` bytes. */
export function paddedTo(raw: Buffer, bytes: number): string {
  const base = edited(raw, (body) => (body.padding = ''));
  const pad = bytes - Buffer.byteLength(base);
  if (pad < 0) throw new Error(`fixture is already ${Buffer.byteLength(base)} bytes`);
  return edited(raw, (body) => (body.padding = 'x'.repeat(pad)));
}

export const newKey = () => randomUUID();

/** The answer's JSON body, untyped (tests assert on its shape). */
export const readJson = (res: Response): Promise<any> => res.json();
