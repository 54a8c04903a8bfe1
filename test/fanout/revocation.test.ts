/** Revocation across replicas (control messages over Redis) and what the upgrade refuses. */
import { performance } from 'node:perf_hooks';
import { expect, test } from 'vitest';
import WebSocket from 'ws';
import { useReplicaPair, type TestGateway } from '../support/gateway.js';
import { connectAgent, eventually } from '../support/agent-client.js';
import { CONNECT_PATH } from '../../src/protocol/kasgate-v1.js';
import { push, received } from './support/helpers.js';

const [a, b] = useReplicaPair();

/** The HTTP status of a refused upgrade (connectAgent rejects with it). */
async function refusedStatus(gw: TestGateway, token: string, protocols?: string[]): Promise<{ status: number; body: string }> {
  const err = (await connectAgent(gw.wsUrl, token, { protocols }).then(
    (agent) => {
      void agent.close();
      throw new Error('the upgrade was accepted');
    },
    (e: unknown) => e,
  )) as { status?: number; body?: string };
  return { status: err.status ?? -1, body: err.body ?? '' };
}

test('revoking a token on A closes its socket on B with 4401 within a second; other tokens stay', async () => {
  const agent = await a.createAgent('revoke-token', 'revoke/config');
  const second = await a.admin('POST', `/agents/${agent.id}/tokens`);
  expect(second.status).toBe(201);
  const tokens = await a.admin('GET', `/agents/${agent.id}/tokens`);
  const firstTokenId = tokens.body.tokens.find((t: { id: string }) => t.id !== second.body.id).id;

  const doomed = await connectAgent(b.wsUrl, agent.token);
  const survivor = await connectAgent(b.wsUrl, second.body.token);
  await survivor.subscribe(['revoke/config']);

  const started = performance.now();
  const revoked = await a.admin('DELETE', `/agents/${agent.id}/tokens/${firstTokenId}`);
  const { code } = await doomed.closed;
  const elapsedMs = performance.now() - started;
  expect(revoked.status).toBe(200);
  expect(revoked.body.revokedAt).not.toBeNull();
  expect(code).toBe(4401);
  expect(elapsedMs).toBeLessThan(1000);

  // The other token's socket keeps working.
  const { after } = await push(a, 'revoke/config', 0);
  await received(survivor, after);
  // The revoked token can no longer connect, on either replica.
  expect((await refusedStatus(a, agent.token)).status).toBe(401);
  expect((await refusedStatus(b, agent.token)).status).toBe(401);
  await survivor.close();
});

test('deleting an agent on A closes all its sockets on both replicas with 4401 within a second', async () => {
  const agent = await a.createAgent('delete-me', 'delete/config');
  const bystander = await a.createAgent('bystander', 'bystander/config');
  const onB = await connectAgent(b.wsUrl, agent.token);
  const onA = await connectAgent(a.wsUrl, agent.token);
  const other = await connectAgent(b.wsUrl, bystander.token);

  const started = performance.now();
  const deleted = await a.admin('DELETE', `/agents/${agent.id}`);
  const closes = await Promise.all([onB.closed, onA.closed]);
  const elapsedMs = performance.now() - started;
  expect(deleted.status).toBe(204);
  expect(closes.map((c) => c.code)).toEqual([4401, 4401]);
  expect(elapsedMs).toBeLessThan(1000);
  expect(other.ws.readyState).toBe(WebSocket.OPEN);

  expect((await refusedStatus(b, agent.token)).status).toBe(401);
  await eventually(() => a.admin('GET', '/connections'), (r) => !r.body.connections.some((c: { agentId: string }) => c.agentId === agent.id));
  await other.close();
});

test('an upgrade with a bad, malformed or missing token gets HTTP 401 and no socket', async () => {
  const agent = await a.createAgent('bad-token', 'bad/config');
  const wrong = `${agent.token.slice(0, -4)}AAAA`;
  for (const token of [wrong, 'not-a-kasgate-token', '']) {
    const refused = await refusedStatus(b, token);
    expect(refused.status).toBe(401);
    expect(JSON.parse(refused.body)).toMatchObject({ error: { code: 'unauthorized' } });
  }
  const connections = await a.admin('GET', `/agents/${agent.id}/connections`);
  expect(connections.body.connections).toEqual([]);
});

test('an upgrade without the kasgate.v1 subprotocol gets HTTP 400, even with a good token', async () => {
  const agent = await a.createAgent('no-subprotocol', 'nosub/config');
  for (const protocols of [[], ['kasgate.v2'], ['graphql-ws']]) {
    const refused = await refusedStatus(a, agent.token, protocols);
    expect(refused.status).toBe(400);
    expect(JSON.parse(refused.body)).toMatchObject({ error: { code: 'unsupported_protocol' } });
  }
});

test('among several offered subprotocols the server picks kasgate.v1', async () => {
  const agent = await a.createAgent('many-subprotocols', 'many/config');
  const socket = await connectAgent(a.wsUrl, agent.token, { protocols: ['graphql-ws', 'kasgate.v1'] });
  expect(socket.ws.protocol).toBe('kasgate.v1');
  await socket.close();
});

test('a plain HTTP GET of the connect path is refused, not upgraded', async () => {
  const res = await fetch(`${a.url}${CONNECT_PATH}`);
  expect(res.status).toBeGreaterThanOrEqual(400);
  expect(res.status).toBeLessThan(500);
});

test('agents connecting while the periodic token check runs are not taken for revoked', async () => {
  const agents = await Promise.all([1, 2, 3].map((n) => a.createAgent(`busy-check-${n}`, `busy/config-${n}`)));
  const checking = setInterval(() => void a.ctx.hub.reconcile(), 1);
  try {
    const sockets = await Promise.all(agents.flatMap((agent) => Array.from({ length: 10 }, () => connectAgent(a.wsUrl, agent.token))));
    await Promise.all([a.ctx.hub.reconcile(), a.ctx.hub.reconcile()]);
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(sockets.filter((s) => s.ws.readyState !== WebSocket.OPEN)).toHaveLength(0);
    await Promise.all(sockets.map((s) => s.close()));
  } finally {
    clearInterval(checking);
  }
});
