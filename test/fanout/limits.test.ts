/** Every agent-connection limit, each set through its environment variable, on two replicas. */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { Socket } from 'node:net';
import { startGateway, type TestGateway } from '../support/gateway.js';
import { connectAgent, eventually, type TestAgent } from '../support/agent-client.js';
import { nextProjectId, pushBody } from '../support/fixtures.js';
import { CloseCode, ErrorCode } from '../../src/protocol/kasgate-v1.js';
import { queryInSchema } from '../support/isolation.js';
import { afters, metric, received, sha } from './support/helpers.js';

const LIMITS = {
  KASGATE_MAX_FRAME_BYTES: '1024',
  KASGATE_MAX_PROJECTS_PER_SUBSCRIBE: '3',
  KASGATE_MAX_CONNECTIONS_PER_AGENT: '2',
  KASGATE_MAX_BAD_FRAMES: '3',
  KASGATE_AUTH_FAILURES_PER_MINUTE: '3',
  KASGATE_MAX_SEND_BUFFER_BYTES: String(256 * 1024),
};

let a: TestGateway;
let b: TestGateway;
beforeAll(async () => {
  a = await startGateway({ env: LIMITS });
  b = await startGateway({ peer: a }); // inherits the limits
});
afterAll(async () => {
  await b?.close();
  await a?.close();
});

const connectFresh = async (gw: TestGateway, name: string, configProject = `${name}/config`) => {
  const agent = await a.createAgent(name, configProject);
  return { agent, client: await connectAgent(gw.wsUrl, agent.token) };
};

/** The client's TCP socket (ws keeps it in a private field): pausing it stops reading, like a stuck agent. */
const tcpSocketOf = (client: TestAgent) => Reflect.get(client.ws, '_socket') as Socket;

const errors = (client: TestAgent) => client.frames.filter((f) => f.type === 'error');

test('a frame over KASGATE_MAX_FRAME_BYTES closes the socket with 4400; one at the limit is fine', async () => {
  const { client } = await connectFresh(b, 'big-frames');
  const frameOf = (size: number) => {
    const base = JSON.stringify({ type: 'subscribe', projects: ['big-frames/config'], pad: '' });
    return JSON.stringify({ type: 'subscribe', projects: ['big-frames/config'], pad: 'x'.repeat(size - base.length) });
  };
  const rejectedBefore = await metric(b, 'kasgate_frames_rejected_total', 'code="frame_too_large"');
  client.sendRaw(frameOf(1024));
  await client.waitFor((f) => f.type === 'subscribed');
  client.sendRaw(frameOf(1025));
  expect((await client.closed).code).toBe(CloseCode.ProtocolViolation);
  expect(await metric(b, 'kasgate_frames_rejected_total', 'code="frame_too_large"')).toBe(rejectedBefore + 1);
});

test('a subscribe naming more than KASGATE_MAX_PROJECTS_PER_SUBSCRIBE projects gets an error frame; the socket stays', async () => {
  const { client } = await connectFresh(a, 'many-projects');
  client.send({ type: 'subscribe', projects: ['p/1', 'p/2', 'p/3', 'p/4'] });
  const error = await client.waitFor((f) => f.type === 'error');
  expect(error).toMatchObject({ code: ErrorCode.TooManyProjects, message: expect.stringContaining('3') });
  expect(client.frames.some((f) => f.type === 'subscribed')).toBe(false);
  const ok = await client.subscribe(['p/1', 'p/2', 'many-projects/config']);
  expect(ok.projects.map((x) => x.path)).toEqual(['p/1', 'p/2', 'many-projects/config']);
  expect(client.ws.readyState).toBe(client.ws.OPEN);
  await client.close();
});

test('bad frames: an error frame each; KASGATE_MAX_BAD_FRAMES in a row close with 4400; a good frame resets the count', async () => {
  const { client } = await connectFresh(b, 'bad-frames');
  const rejected = (code: string) => metric(b, 'kasgate_frames_rejected_total', `code="${code}"`);
  const before = { json: await rejected('invalid_json'), frame: await rejected('invalid_frame') };

  client.sendRaw('{not json');
  client.send({ type: 'subscribe', projects: 'not-a-list' });
  await eventually(() => errors(client).length, (n) => n === 2);
  await client.subscribe(['bad-frames/config']); // good: the count starts again
  client.send({ type: 'ack', eventId: '-1' });
  client.sendRaw(Buffer.from('{"type":"ack","eventId":"1"}'), true); // binary frames are not the protocol
  await eventually(() => errors(client).length, (n) => n === 4);
  expect(client.ws.readyState).toBe(client.ws.OPEN); // 2 in a row so far: under the limit of 3

  client.send({ type: 'hello' }); // a server frame type, not a client one
  const { code } = await client.closed;
  expect(code).toBe(CloseCode.ProtocolViolation);
  expect(errors(client).map((e) => (e as { code: string }).code)).toEqual([
    ErrorCode.InvalidJson,
    ErrorCode.InvalidFrame,
    ErrorCode.InvalidFrame,
    ErrorCode.InvalidFrame,
    ErrorCode.InvalidFrame,
  ]);
  expect(await rejected('invalid_json')).toBe(before.json + 1);
  expect(await rejected('invalid_frame')).toBe(before.frame + 4);
});

test('KASGATE_MAX_CONNECTIONS_PER_AGENT counts connections on both replicas; one more is closed with 4429', async () => {
  const agent = await a.createAgent('crowded', 'crowded/config');
  const onA = await connectAgent(a.wsUrl, agent.token);
  const onB = await connectAgent(b.wsUrl, agent.token);
  for (const gw of [a, b]) {
    const refused = await connectAgent(gw.wsUrl, agent.token).then(
      () => undefined,
      (err: { code?: number }) => err.code,
    );
    expect(refused).toBe(CloseCode.TooManyConnections);
  }
  const listed = await a.admin('GET', `/agents/${agent.id}/connections`);
  expect(listed.body.connections.map((c: { replicaId: string }) => c.replicaId).sort()).toEqual(
    [a.ctx.config.replicaId, b.ctx.config.replicaId].sort(),
  );
  // Another agent is not affected.
  const { client: other } = await connectFresh(a, 'not-crowded');

  await onA.close();
  const again = await eventually(
    () => connectAgent(b.wsUrl, agent.token).catch(() => undefined),
    (client) => client !== undefined,
  );
  await Promise.all([again!.close(), onB.close(), other.close()]);
});

test('failed authentications per address: 429 past KASGATE_AUTH_FAILURES_PER_MINUTE, counted in Redis across replicas', async () => {
  const agent = await a.createAgent('rate-limited', 'rate/config');
  const attempt = (gw: TestGateway, token: string) =>
    connectAgent(gw.wsUrl, token).then(
      async (client) => {
        await client.close();
        return 101;
      },
      (err: { status?: number }) => err.status,
    );
  const wrong = `${agent.token.slice(0, -6)}000000`;
  expect(await attempt(a, wrong)).toBe(401);
  expect(await attempt(b, wrong)).toBe(401);
  expect(await attempt(a, wrong)).toBe(401);
  // The fourth failure from this address, on either replica, is over the shared budget of 3.
  expect(await attempt(b, wrong)).toBe(429);
  expect(await attempt(a, 'kgagent_guess')).toBe(429);
  // An agent with a good token from the same address still gets in (decision: only failures are limited).
  expect(await attempt(b, agent.token)).toBe(101);

  const keys = await a.ctx.redis!.keys(`${a.redisPrefix}ratelimit:*`);
  expect(keys).toHaveLength(1);
  expect(Number(await a.ctx.redis!.get(keys[0]!))).toBe(5);
});

describe('a slow consumer', () => {
  /**
   * Appends pushes straight into the log with the production SQL function, then makes both replicas
   * dispatch them now (the dispatcher's catch-up path, as after a missed doorbell): a thousand
   * webhooks over HTTP would take most of this test's time budget and test nothing more here.
   */
  async function appendAndDispatch(path: string, projectId: number, count: number): Promise<string[]> {
    const events = Array.from({ length: count }, (_, ord) => ({
      ord,
      kind: 'push',
      project_id: projectId,
      project_path: path,
      visibility: 0,
      default_branch: 'd'.repeat(1000),
      ref: `refs/heads/${'r'.repeat(1000)}`,
      before_sha: sha(),
      after_sha: sha(),
      checkout_sha: null,
      user_username: 'slow',
      idempotency_key: null,
      received_at: new Date().toISOString(),
    }));
    await queryInSchema(a.schema, 'SELECT * FROM append_push_events($1::jsonb)', [JSON.stringify(events)]);
    await Promise.all([a.ctx.dispatcher.sweep(), b.ctx.dispatcher.sweep()]);
    return events.map((e) => e.after_sha);
  }

  test('is closed once over KASGATE_MAX_SEND_BUFFER_BYTES while the other agents keep receiving', async () => {
    // Large frames (~3 KiB) so that the kernel's socket buffers (a few MiB on loopback) fill after
    // about a thousand pushes; the path stays short enough for a subscribe under the 1 KiB frame limit.
    const path = `slow/${'p'.repeat(900)}`;
    const projectId = nextProjectId();
    const agent = await a.createAgent('slow-path', path);
    const slow = await connectAgent(b.wsUrl, agent.token);
    const fastOnB = await connectAgent(b.wsUrl, agent.token);
    const other = await a.createAgent('fast-other', path);
    const fastOnA = await connectAgent(a.wsUrl, other.token);
    for (const client of [slow, fastOnB, fastOnA]) await client.subscribe([path]);
    const slowId = (slow.frames[0] as { connectionId: string }).connectionId;
    const closedBefore = await metric(b, 'kasgate_slow_consumers_closed_total');

    tcpSocketOf(slow).pause();
    const sent: string[] = [];
    // Rounds of 50 (~160 KiB per socket, under the 256 KiB bound) until the slow socket is cut.
    while ((await metric(b, 'kasgate_slow_consumers_closed_total')) === closedBefore) {
      expect(sent.length).toBeLessThan(6000);
      sent.push(...(await appendAndDispatch(path, projectId, 50)));
    }
    const last = sha();
    const res = await a.postWebhook(pushBody({ path, projectId, visibility: 0, after: last }));
    expect(res.status).toBe(202);
    sent.push(last);

    await received(fastOnB, last, 15_000);
    await received(fastOnA, last, 15_000);
    expect(afters(fastOnB)).toEqual(sent);
    expect(afters(fastOnA)).toEqual(sent);

    const connections = await eventually(
      () => a.admin('GET', `/agents/${agent.id}/connections`),
      (r) => r.body.connections.length === 1,
    );
    expect(connections.body.connections[0].connectionId).not.toBe(slowId);
    tcpSocketOf(slow).resume();
    await slow.closed;
    expect(slow.pushes().length).toBeLessThan(sent.length);
    await Promise.all([fastOnA.close(), fastOnB.close()]);
  });
});

test('an agent that sends subscribes but reads nothing is cut at the send-buffer bound too', async () => {
  const solo = await startGateway({ env: { KASGATE_MAX_SEND_BUFFER_BYTES: String(256 * 1024) } });
  try {
    const agent = await solo.createAgent('never-reads', 'never/reads');
    const client = await connectAgent(solo.wsUrl, agent.token);
    const projects = Array.from({ length: 200 }, (_, i) => `never-reads/${String(i).padStart(3, '0')}-${'x'.repeat(250)}`);
    tcpSocketOf(client).pause();
    // Each subscribe (~52 KiB) is answered with a larger subscribed frame that is never read.
    for (let i = 0; i < 400 && (await metric(solo, 'kasgate_slow_consumers_closed_total')) === 0; i++) {
      client.send({ type: 'subscribe', projects });
    }
    expect(await metric(solo, 'kasgate_slow_consumers_closed_total')).toBe(1);
    await eventually(() => solo.ctx.hub.size, (n) => n === 0);
    tcpSocketOf(client).resume();
    await client.closed;
  } finally {
    await solo.close();
  }
});

test('a push frame larger than the send-buffer bound still reaches an agent that reads', async () => {
  const solo = await startGateway({ env: { KASGATE_MAX_SEND_BUFFER_BYTES: '1024' } });
  try {
    const agent = await solo.createAgent('big-push', 'big/push');
    const client = await connectAgent(solo.wsUrl, agent.token);
    await client.subscribe(['big/push']);
    const after = sha();
    const ref = `refs/heads/${'r'.repeat(1000)}`;
    const res = await solo.postWebhook(pushBody({ path: 'big/push', projectId: nextProjectId(), visibility: 0, after, ref, defaultBranch: 'd'.repeat(1000) }));
    expect(res.status).toBe(202);
    expect(await received(client, after)).toMatchObject({ ref });
    await client.close();
  } finally {
    await solo.close();
  }
});
