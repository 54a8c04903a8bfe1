/**
 * The doorbell between two replicas on real Redis: each replica drops its own doorbells when they
 * come back (it dispatched them already), and never another replica's.
 */
import { afterAll, expect, test } from 'vitest';
import { useReplicaPair } from '../support/gateway.js';
import { connectAgent, type TestAgent } from '../support/agent-client.js';
import { afters, metric, push, received } from './support/helpers.js';

const [a, b] = useReplicaPair();
const agents: TestAgent[] = [];
afterAll(async () => {
  for (const agent of agents) await agent.close();
});

test("pushes taken by either replica reach agents on both by the doorbell, each once, none read back from the log", async () => {
  const path = 'doorbell/app';
  const onA = await connectAgent(a.wsUrl, (await a.createAgent('doorbell-a', path)).token);
  const onB = await connectAgent(b.wsUrl, (await b.createAgent('doorbell-b', path)).token);
  agents.push(onA, onB);
  await onA.subscribe([path]);
  await onB.subscribe([path]);
  const gaps = async () => (await metric(a, 'kasgate_doorbell_gaps_recovered_total')) + (await metric(b, 'kasgate_doorbell_gaps_recovered_total'));
  const before = await gaps();

  const sent: string[] = [];
  for (let i = 0; i < 6; i++) {
    const { after } = await push(i % 2 === 0 ? a : b, path, 20);
    sent.push(after);
    // Each push lands within the doorbell's time, far below the periodic sweep's.
    await Promise.all([received(onA, after, 1000), received(onB, after, 1000)]);
  }
  expect(afters(onA)).toEqual(sent);
  expect(afters(onB)).toEqual(sent);
  expect(await gaps()).toBe(before);
});
