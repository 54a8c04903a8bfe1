/** Per-agent deliveries: first delivery per event and agent, however many connections, replays and agents. */
import { expect, test } from 'vitest';
import { connectAgent, eventually, type TestAgent } from '../support/agent-client.js';
import { useGateway } from '../support/gateway.js';
import { nextProjectId, pushBody } from '../support/fixtures.js';
import { eventOf } from './support.js';

const gw = useGateway();

async function postPush(path: string, projectId: number): Promise<string> {
  const res = await gw.postWebhook(pushBody({ projectId, path, visibility: 20 }));
  expect(res.status).toBe(202);
  return ((await res.json()) as { eventId: string }).eventId;
}

test('two connections of one agent and a replay count as one delivery, at the first frame', async () => {
  const projectId = nextProjectId();
  const path = `group/deliveries-${projectId}`;
  const agent = await gw.createAgent(`deliveries-${projectId}`, path);
  const a = await connectAgent(gw.wsUrl, agent.token);
  const b = await connectAgent(gw.wsUrl, agent.token);
  await a.subscribe([path]);
  await b.subscribe([path]);
  const eventId = await postPush(path, projectId);
  await a.waitFor((f) => f.type === 'push' && f.eventId === eventId);
  await b.waitFor((f) => f.type === 'push' && f.eventId === eventId);
  // A third connection replays it.
  const c = await connectAgent(gw.wsUrl, agent.token);
  await c.subscribe([path], String(BigInt(eventId) - 1n));
  await c.waitFor((f) => f.type === 'push' && f.eventId === eventId);
  const event = await eventually(() => eventOf(gw, eventId), (e) => e.deliveries.length > 0);
  await new Promise((r) => setTimeout(r, 300));
  expect((await eventOf(gw, eventId)).deliveries).toEqual(event.deliveries);
  expect(event.deliveries).toEqual([{ agent: { id: agent.id, name: `deliveries-${projectId}` }, at: expect.any(String) }]);
  expect(Date.parse(event.deliveries[0]!.at)).toBeLessThanOrEqual(Date.now());
  for (const s of [a, b, c]) await s.close();
});

test('a push fanned out to more agents than one transaction records (250) is recorded for every one', { timeout: 60_000 }, async () => {
  const projectId = nextProjectId();
  const path = `group/fanout-${projectId}`;
  const agents: TestAgent[] = [];
  const ids = new Set<string>();
  for (let i = 0; i < 250; i += 25) {
    const batch = await Promise.all(Array.from({ length: 25 }, (_, j) => gw.createAgent(`fan-${projectId}-${i + j}`, `group/config-${projectId}-${i + j}`)));
    for (const { id } of batch) ids.add(id);
    agents.push(...(await Promise.all(batch.map((r) => connectAgent(gw.wsUrl, r.token)))));
  }
  await Promise.all(agents.map((a) => a.subscribe([path])));
  const eventId = await postPush(path, projectId);
  await Promise.all(agents.map((a) => a.waitFor((f) => f.type === 'push' && f.eventId === eventId)));
  const event = await eventually(() => eventOf(gw, eventId), (e) => e.deliveries.length === 250, 15_000);
  expect(new Set(event.deliveries.map((d) => d.agent.id))).toEqual(ids);
  await Promise.all(agents.map((a) => a.close()));
});
