/** Helpers shared by the fan-out tests: metrics scraping and push shorthands. */
import { randomBytes } from 'node:crypto';
import { expect } from 'vitest';
import type { TestGateway } from '../../support/gateway.js';
import type { TestAgent } from '../../support/agent-client.js';
import { nextProjectId, pushBody } from '../../support/fixtures.js';

/** The value of one sample of /metrics (0 when absent). `labels` like `code="invalid_json"`. */
export async function metric(gw: TestGateway, name: string, labels = ''): Promise<number> {
  const text = await (await fetch(`${gw.url}/metrics`)).text();
  const wanted = labels ? `${name}{${labels}}` : name;
  for (const line of text.split('\n')) {
    const space = line.lastIndexOf(' ');
    if (space > 0 && line.slice(0, space) === wanted) return Number(line.slice(space + 1));
  }
  return 0;
}

const projectIds = new Map<string, number>();
/** One stable project id per lower-cased path, as GitLab would have. */
export function projectIdOf(path: string): number {
  const key = path.toLowerCase();
  if (!projectIds.has(key)) projectIds.set(key, nextProjectId());
  return projectIds.get(key)!;
}

export const sha = () => randomBytes(20).toString('hex');

/** Posts a push of `path` with `visibility` to `gw`; returns the pushed `after` sha and the event id. */
export async function push(gw: TestGateway, path: string, visibility: number | null): Promise<{ after: string; eventId: string }> {
  const after = sha();
  const res = await gw.postWebhook(pushBody({ path, visibility, projectId: projectIdOf(path), after }));
  const body = (await res.json()) as { eventId: string };
  expect(res.status).toBe(202);
  return { after, eventId: body.eventId };
}

/** The `after` shas of the pushes an agent received, in order. */
export const afters = (agent: TestAgent) => agent.pushes().map((p) => p.after);

/** Waits until the agent received the push with this `after`. */
export const received = (agent: TestAgent, after: string, timeoutMs = 5000) =>
  agent.waitFor((f) => f.type === 'push' && f.after === after, timeoutMs);
