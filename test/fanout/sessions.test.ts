/**
 * One connection's life under concurrency, on two replicas with default limits: subscribing while
 * events flow, replacing the subscription, closing mid-subscribe, and the default bad-frame limit.
 */
import { expect, test } from 'vitest';
import WebSocket from 'ws';
import { useReplicaPair, type TestGateway } from '../support/gateway.js';
import { connectAgent, eventually } from '../support/agent-client.js';
import { queryInSchema } from '../support/isolation.js';
import { CloseCode, CONNECT_PATH, SUBPROTOCOL } from '../../src/protocol/kasgate-v1.js';
import { afters, push, received } from './support/helpers.js';

const [a, b] = useReplicaPair();

/** Posts pushes of `path` to `gw` one after another until `stop()` says so; returns their afters in log order. */
function pushStream(gw: TestGateway, path: string) {
  const sent: string[] = [];
  const state = { stopped: false };
  const done = (async () => {
    while (!state.stopped) sent.push((await push(gw, path, 0)).after);
  })();
  return {
    sent,
    async stop() {
      state.stopped = true;
      await done;
      return sent;
    },
  };
}

test('subscribing while events flow: from the first push received on, no gap, no duplicate, in order', async () => {
  const agent = await a.createAgent('mid-stream', 'stream/app');
  const client = await connectAgent(b.wsUrl, agent.token);
  const stream = pushStream(a, 'stream/app');
  await eventually(() => stream.sent.length, (n) => n >= 5);
  await client.subscribe(['stream/app']);
  await eventually(() => client.pushes().length, (n) => n >= 5);
  const sent = await stream.stop();
  await received(client, sent.at(-1)!);

  const got = afters(client);
  const first = sent.indexOf(got[0]!);
  expect(first).toBeGreaterThanOrEqual(4); // nothing from before the subscribe is replayed without resumeAfter
  expect(got).toEqual(sent.slice(first));
  await client.close();
});

test('subscribing with resumeAfter while events flow: every later push exactly once, in order', async () => {
  const agent = await a.createAgent('resume-mid-stream', 'resume/app');
  const client = await connectAgent(b.wsUrl, agent.token);
  const firstPush = await push(a, 'resume/app', 0);
  const stream = pushStream(a, 'resume/app');
  await eventually(() => stream.sent.length, (n) => n >= 5);
  await client.subscribe(['resume/app'], firstPush.eventId);
  const sent = await stream.stop();
  await received(client, sent.at(-1)!);
  expect(afters(client)).toEqual(sent);
  await client.close();
});

test('each subscribe replaces the whole set, also when several arrive at once', async () => {
  const agent = await a.createAgent('resubscriber', 'resub/config');
  const client = await connectAgent(b.wsUrl, agent.token);
  await client.subscribe(['resub/x']);
  const x1 = await push(a, 'resub/x', 20);
  await received(client, x1.after);

  // Three subscribes without waiting: the answers come in order and the last set wins.
  for (const projects of [['resub/x', 'resub/y'], ['resub/y'], ['resub/z', 'Resub/Config']]) client.send({ type: 'subscribe', projects });
  await eventually(() => client.frames.filter((f) => f.type === 'subscribed').length, (n) => n === 4);
  const answers = client.frames.filter((f) => f.type === 'subscribed').map((f) => f.projects.map((p) => p.path));
  expect(answers).toEqual([['resub/x'], ['resub/x', 'resub/y'], ['resub/y'], ['resub/z', 'Resub/Config']]);

  const dropped = [await push(a, 'resub/x', 20), await push(a, 'resub/y', 20)];
  const kept = [await push(a, 'resub/z', 20), await push(a, 'resub/config', 0)];
  await received(client, kept[1]!.after);
  expect(afters(client)).toEqual([x1.after, ...kept.map((k) => k.after)]);
  expect(afters(client)).not.toContain(dropped[0]!.after);

  const listed = await eventually(
    () => a.admin('GET', `/agents/${agent.id}/connections`),
    (r) => r.body.connections[0]?.projects.join() === 'resub/z,Resub/Config',
  );
  expect(listed.body.connections).toHaveLength(1);

  await client.subscribe([]); // an empty set: nothing flows
  const none = await push(a, 'resub/config', 0);
  const sentinelAgent = await connectAgent(b.wsUrl, agent.token);
  await sentinelAgent.subscribe(['resub/config']);
  const sentinel = await push(a, 'resub/config', 0);
  await received(sentinelAgent, sentinel.after);
  expect(afters(client)).not.toContain(none.after);
  expect(afters(client)).not.toContain(sentinel.after);
  await Promise.all([client.close(), sentinelAgent.close()]);
});

test('sockets closed during their upgrade or subscribe leave nothing behind: hub, presence, metrics', async () => {
  const agent = await a.createAgent('flaky', 'flaky/config');
  const hubSize = b.ctx.hub.size;
  const attempts = Array.from({ length: 20 }, (_, i) => {
    return new Promise<void>((resolve) => {
      const ws = new WebSocket(`${b.wsUrl}${CONNECT_PATH}`, [SUBPROTOCOL], { headers: { authorization: `Bearer ${agent.token}` } });
      ws.on('error', () => {});
      ws.on('close', () => resolve());
      if (i % 2 === 0) {
        ws.on('open', () => ws.close()); // before or while the server registers it
      } else {
        ws.on('message', () => {
          ws.send(JSON.stringify({ type: 'subscribe', projects: ['flaky/config'], resumeAfter: '0' }));
          ws.terminate(); // mid-subscribe, without a close handshake
        });
      }
    });
  });
  await Promise.all(attempts);
  expect(await eventually(() => b.ctx.hub.size, (n) => n === hubSize)).toBe(hubSize);
  const listed = await eventually(() => a.admin('GET', `/agents/${agent.id}/connections`), (r) => r.body.connections.length === 0);
  expect(listed.body.connections).toEqual([]);
  // And the agent can still connect: nothing counts against its connection limit.
  const client = await connectAgent(b.wsUrl, agent.token);
  await client.subscribe(['flaky/config']);
  const p = await push(a, 'flaky/config', 0);
  await received(client, p.after);
  await client.close();
});

test('a deleted agent whose control message was lost is closed by the access check (Hub.reconcile, run every other heartbeat); grants refresh too', async () => {
  const agent = await a.createAgent('lost-message', 'lost/config');
  const client = await connectAgent(b.wsUrl, agent.token);
  await client.subscribe(['lost/config', 'lost-group/app']);
  // Grants written straight to the database: no control message is sent.
  await queryInSchema(a.schema, "INSERT INTO agent_grants (agent_id, kind, path) VALUES ($1, 'group', 'lost-group')", [agent.id]);
  await b.ctx.hub.reconcile();
  const granted = await push(a, 'lost-group/app', 0);
  await received(client, granted.after);

  await queryInSchema(a.schema, 'DELETE FROM agents WHERE id = $1', [agent.id]);
  await b.ctx.hub.reconcile();
  expect((await client.closed).code).toBe(CloseCode.Revoked);
});

test('with default limits, five bad frames in a row close the socket with 4400', async () => {
  const agent = await a.createAgent('five-bad', 'five/config');
  const client = await connectAgent(a.wsUrl, agent.token);
  for (let i = 0; i < 4; i++) client.sendRaw('nope');
  await eventually(() => client.frames.filter((f) => f.type === 'error').length, (n) => n === 4);
  expect(client.ws.readyState).toBe(WebSocket.OPEN);
  client.sendRaw('nope');
  expect((await client.closed).code).toBe(CloseCode.ProtocolViolation);
  expect(client.frames.filter((f) => f.type === 'error')).toHaveLength(5);
});
