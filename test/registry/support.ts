/** Registry notification helpers: the secret, posts, and envelopes built on the documented fixture. */
import { randomBytes, randomUUID } from 'node:crypto';
import { registryFixtures } from '../support/fixtures.js';
import type { TestGateway } from '../support/gateway.js';

export const REGISTRY_SECRET = `Bearer ${randomBytes(16).toString('hex')}`;
/** Another accepted value (a secret being rotated in), with another scheme. */
export const OTHER_REGISTRY_SECRET = `Token ${randomBytes(16).toString('hex')}`;
export const registryEnv = { KASGATE_REGISTRY_SECRETS: `${REGISTRY_SECRET}, ${OTHER_REGISTRY_SECRET}` };

export const EVENTS_V2 = 'application/vnd.docker.distribution.events.v2+json';

/** POSTs a notification as the registry sends it (headers override the defaults). */
export function postRegistry(gw: TestGateway, body: object | string | Buffer, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${gw.url}/webhooks/registry`, {
    method: 'POST',
    headers: { 'content-type': EVENTS_V2, authorization: REGISTRY_SECRET, ...headers },
    body: typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body),
    signal: AbortSignal.timeout(10_000),
  });
}

export interface PushSpec {
  repository: string;
  tag?: string | null;
  action?: string;
  id?: string;
  digest?: string;
}

const documented = () => JSON.parse(registryFixtures.taggedPush.toString()) as { events: any[] };

/**
 * One registry event in the documented shape: the fixture's tagged manifest push, with another
 * repository, tag, action or id (`tag: null` drops it, as for a push by digest).
 */
export function registryEvent(spec: PushSpec): Record<string, any> {
  const event = structuredClone(documented().events.at(-1)!);
  event.id = spec.id ?? randomUUID();
  event.action = spec.action ?? 'push';
  event.target.repository = spec.repository;
  if (spec.digest !== undefined) event.target.digest = spec.digest;
  if (spec.tag === null) delete event.target.tag;
  else if (spec.tag !== undefined) event.target.tag = spec.tag;
  return event;
}

export const envelope = (...specs: PushSpec[]) => ({ events: specs.map(registryEvent) });
