/**
 * Presence in Redis across replicas: who is connected where, refreshed by the heartbeat, removed
 * on close, and expiring by TTL when a replica dies without a word.
 */
import { describe, expect, test } from 'vitest';
import { useGateway, useReplicaPair, type TestGateway } from '../support/gateway.js';
import { connectAgent, eventually } from '../support/agent-client.js';
import { CloseCode } from '../../src/protocol/kasgate-v1.js';
import { push } from './support/helpers.js';
import { startReplicaProcess } from '../support/replica-process.js';
import type { ConnectionRecord as Connection } from '../../src/fanout/presence.js';


const connectionsOf = async (gw: TestGateway, agentId?: string): Promise<Connection[]> => {
  const { status, body } = await gw.admin('GET', agentId ? `/agents/${agentId}/connections` : '/connections');
  expect(status).toBe(200);
  return body.connections;
};

describe('two replicas, default heartbeat', () => {
  const [a, b] = useReplicaPair();

  test('GET /connections on A lists an agent connected to B, with its subscription; gone once it closes', async () => {
    const agent = await a.createAgent('present', 'present/config');
    const startedAt = Date.now();
    const client = await connectAgent(b.wsUrl, agent.token);
    const hello = client.frames[0] as { connectionId: string };
    await client.subscribe(['present/config', 'Other/Project']);

    const [conn] = await eventually(
      () => connectionsOf(a),
      (list) => list.some((c) => c.agentId === agent.id && c.projects.length === 2),
    ).then((list) => list.filter((c) => c.agentId === agent.id));
    expect(conn).toEqual({
      connectionId: hello.connectionId,
      agentId: agent.id,
      agentName: 'present',
      replicaId: b.ctx.config.replicaId,
      remoteAddress: '127.0.0.1',
      connectedAt: expect.any(String),
      lastHeartbeatAt: expect.any(String),
      projects: ['present/config', 'Other/Project'],
    });
    expect(b.ctx.config.replicaId).not.toBe(a.ctx.config.replicaId);
    expect(Date.parse(conn!.connectedAt)).toBeGreaterThanOrEqual(startedAt - 1000);
    expect(Date.parse(conn!.lastHeartbeatAt)).toBeGreaterThanOrEqual(Date.parse(conn!.connectedAt));
    expect(await connectionsOf(a, agent.id)).toEqual([conn]);
    expect(await connectionsOf(b, agent.id)).toEqual([conn]);

    await client.close();
    await eventually(() => connectionsOf(a, agent.id), (list) => list.length === 0);
    expect((await connectionsOf(b)).some((c) => c.agentId === agent.id)).toBe(false);
  });

  test('GET /agents/{id}/connections of an unknown agent is 404', async () => {
    expect((await a.admin('GET', '/agents/00000000-0000-4000-8000-000000000000/connections')).status).toBe(404);
    expect((await a.admin('GET', '/agents/not-a-uuid/connections')).status).toBe(404);
  });

  test('GET /projects/{idOrPath} shows who watches a project, on any replica, and whether each is granted', async () => {
    const owner = await a.createAgent('watch-owner', 'Watched/App');
    const stranger = await a.createAgent('watch-stranger', 'stranger/config');
    const ownerConn = await connectAgent(a.wsUrl, owner.token);
    const strangerConn = await connectAgent(b.wsUrl, stranger.token);
    await ownerConn.subscribe(['watched/app']);
    await strangerConn.subscribe(['WATCHED/APP']);
    await push(a, 'Watched/App', 0);

    const view = async (idOrPath: string) => a.admin('GET', `/projects/${idOrPath}`);
    const byPath = await eventually(
      () => view(encodeURIComponent('watched/app')),
      (r) => r.status === 200 && r.body.watchers.length === 2,
    );
    expect(byPath.body.project).toMatchObject({ path: 'Watched/App', visibility: 0, defaultBranch: 'main' });
    const watchers = Object.fromEntries(byPath.body.watchers.map((w: { agentName: string }) => [w.agentName, w]));
    expect(watchers['watch-owner']).toMatchObject({ agentId: owner.id, access: 'granted', replicaId: a.ctx.config.replicaId });
    expect(watchers['watch-stranger']).toMatchObject({ agentId: stranger.id, access: 'unverified', replicaId: b.ctx.config.replicaId });

    const byId = await view(String(byPath.body.project.id));
    expect(byId.status).toBe(200);
    expect(byId.body.watchers).toHaveLength(2);
    expect((await view('Watched/App')).body.project.path).toBe('Watched/App'); // unencoded slashes too

    expect((await view('nobody/knows-this')).status).toBe(404);
    expect((await view('%25')).status).toBe(404); // a lone '%' once decoded: a bad escape, not a 500
    for (const odd of ['a%2F%2Fb', '%20x', 'a%2F..%2Fb']) {
      const answer = await view(odd);
      expect(answer.status).toBe(400);
      expect(answer.body.error.code).toBe('invalid_request');
    }

    await ownerConn.close();
    await strangerConn.close();
  });
});

describe('heartbeat every second', () => {
  const h = useGateway({ env: { KASGATE_HEARTBEAT_SECONDS: '1' } });

  test('an agent that answers no ping is closed with 4408 and leaves presence; one that answers stays', async () => {
    const agent = await h.createAgent('silent', 'silent/config');
    const lively = await h.createAgent('lively', 'lively/config');
    const silent = await connectAgent(h.wsUrl, agent.token, { autoPong: false });
    const answering = await connectAgent(h.wsUrl, lively.token);
    expect(silent.frames[0]).toMatchObject({ type: 'hello', heartbeatSeconds: 1 });
    await eventually(() => connectionsOf(h, agent.id), (list) => list.length === 1);
    const firstBeat = (await connectionsOf(h, lively.id))[0]!.lastHeartbeatAt;

    const { code } = await silent.closed;
    expect(code).toBe(CloseCode.HeartbeatMissed);
    await eventually(() => connectionsOf(h, agent.id), (list) => list.length === 0);

    // The answering agent outlived the silent one, and its heartbeat moved on in presence.
    expect(answering.ws.readyState).toBe(answering.ws.OPEN);
    const [record] = await eventually(() => connectionsOf(h, lively.id), (list) => list[0]!.lastHeartbeatAt > firstBeat);
    expect(Date.parse(record!.lastHeartbeatAt)).toBeGreaterThan(Date.parse(firstBeat));
    await answering.close();
  });

  test('a replica killed outright leaves presence entries that expire by TTL; the agent can then reconnect', async () => {
    const agent = await h.createAgent('orphan', 'orphan/config');
    const child = await startReplicaProcess(h.env, { name: `child-${agent.id.slice(0, 8)}` });
    const kill = async () => {
      child.kill('SIGKILL');
      await child.exited;
    };
    try {
      const client = await connectAgent(child.wsUrl, agent.token);
      await client.subscribe(['orphan/config']);
      const [conn] = await eventually(() => connectionsOf(h, agent.id), (list) => list.length === 1 && list[0]!.projects.length === 1);
      expect(conn!.replicaId).toBe(child.name);

      await kill();
      const killedAt = Date.now();
      await client.closed;
      // Nobody removed the entry: it is still listed right after the kill, and then expires (TTL = 3 heartbeats).
      expect((await connectionsOf(h, agent.id)).map((c) => c.connectionId)).toEqual([conn!.connectionId]);
      await eventually(() => connectionsOf(h, agent.id), (list) => list.length === 0, 8000);
      const expiredAfterMs = Date.now() - killedAt;
      expect(expiredAfterMs).toBeGreaterThan(500);
      expect(expiredAfterMs).toBeLessThan(6000);

      const again = await connectAgent(h.wsUrl, agent.token);
      await eventually(() => connectionsOf(h, agent.id), (list) => list.length === 1 && list[0]!.replicaId === h.ctx.config.replicaId);
      await again.close();
    } finally {
      await kill();
    }
  });
});
