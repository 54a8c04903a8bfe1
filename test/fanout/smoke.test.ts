import { expect, test } from 'vitest';
import { useGateway } from '../support/gateway.js';
import { connectAgent } from '../support/agent-client.js';
import { pushBody } from '../support/fixtures.js';

const gw = useGateway();

test('a push reaches a subscribed agent', async () => {
  const agent = await gw.createAgent('smoke', 'group/app');
  const a = await connectAgent(gw.wsUrl, agent.token);
  const sub = await a.subscribe(['group/app']);
  expect(sub.projects).toEqual([{ path: 'group/app', access: 'granted' }]);
  const res = await gw.postWebhook(pushBody({ path: 'group/app', visibility: 0, projectId: 7 }));
  expect(res.status).toBe(202);
  const push = await a.waitFor((f) => f.type === 'push');
  expect(push).toMatchObject({ type: 'push', project: { path: 'group/app', id: 7 } });
  await a.close();
});
