/**
 * Two replicas of one deployment on real Postgres and Redis: an agent receives exactly the pushes
 * the access rule allows, whichever replica took the webhook and whichever holds the socket.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { useReplicaPair, type TestGateway } from '../support/gateway.js';
import { connectAgent, eventually, type TestAgent } from '../support/agent-client.js';
import { afters, metric, push, received } from './support/helpers.js';

const PRIVATE = 0;
const INTERNAL = 10;
const PUBLIC = 20;

const [a, b] = useReplicaPair();

describe.each([
  ['A', 'B'],
  ['B', 'A'],
] as const)('webhooks taken by replica %s, agents on replica %s', (ingressName, egressName) => {
  const tag = `${ingressName.toLowerCase()}${egressName.toLowerCase()}`;
  const p = (path: string) => `${tag}-${path}`;
  let ingress: TestGateway;
  let egress: TestGateway;
  let alpha: TestAgent; // config project alpha/config, granted the group `granted-group`
  let beta: TestAgent; // config project beta/config, no grants
  let alphaId: string;

  const watched = () => [
    p('alpha/config'),
    p('beta/config'),
    p('pub/app'),
    p('int/app'),
    p('priv/app'),
    p('granted-group/sub/app'),
    p('granted-groupx/app'),
    p('flip/app'),
    p('mixed/case'),
    p('UPPER/Lower'),
    p('never/seen'),
  ];

  beforeAll(async () => {
    ingress = ingressName === 'A' ? a : b;
    egress = egressName === 'A' ? a : b;
    const alphaAgent = await ingress.createAgent(`${tag}-alpha`, p('Alpha/Config'));
    alphaId = alphaAgent.id;
    const grant = await ingress.admin('PUT', `/agents/${alphaId}/grants`, { groups: [p('Granted-Group')] });
    if (grant.status !== 200) throw new Error(`granting: ${grant.status} ${JSON.stringify(grant.body)}`);
    const betaAgent = await ingress.createAgent(`${tag}-beta`, p('beta/config'));
    alpha = await connectAgent(egress.wsUrl, alphaAgent.token);
    beta = await connectAgent(egress.wsUrl, betaAgent.token);
  });

  test('subscribed says granted only for what is granted; everything else is unverified', async () => {
    const answer = await alpha.subscribe(watched());
    const access = Object.fromEntries(answer.projects.map((x) => [x.path, x.access]));
    expect(access).toEqual({
      [p('alpha/config')]: 'granted',
      [p('beta/config')]: 'unverified',
      [p('pub/app')]: 'unverified', // no push seen yet: not known to be public
      [p('int/app')]: 'unverified',
      [p('priv/app')]: 'unverified',
      [p('granted-group/sub/app')]: 'granted',
      [p('granted-groupx/app')]: 'unverified',
      [p('flip/app')]: 'unverified',
      [p('mixed/case')]: 'unverified',
      [p('UPPER/Lower')]: 'unverified',
      [p('never/seen')]: 'unverified',
    });
    const betaAnswer = await beta.subscribe(watched());
    expect(betaAnswer.projects.filter((x) => x.access === 'granted').map((x) => x.path)).toEqual([p('beta/config')]);
  });

  test('each agent receives exactly the pushes the rule allows, in order', async () => {
    const alphaGets: string[] = [];
    const betaGets: string[] = [];
    const send = async (path: string, visibility: number | null, toAlpha: boolean, toBeta: boolean) => {
      const { after } = await push(ingress, path, visibility);
      if (toAlpha) alphaGets.push(after);
      if (toBeta) betaGets.push(after);
    };
    await send(p('alpha/config'), PRIVATE, true, false); // own config project
    await send(p('ALPHA/CONFIG'), null, true, false); // same, upper case in the webhook, visibility unknown
    await send(p('beta/config'), PRIVATE, false, true); // another agent's config project
    await send(p('pub/app'), PUBLIC, true, true);
    await send(p('int/app'), INTERNAL, false, false);
    await send(p('priv/app'), PRIVATE, false, false);
    await send(p('granted-group/sub/app'), PRIVATE, true, false); // grant by group
    await send(p('Granted-Group/Sub/App'), INTERNAL, true, false); // grant by group, other case
    await send(p('granted-groupx/app'), PRIVATE, false, false); // not on a segment boundary
    await send(p('flip/app'), PUBLIC, true, true);
    await send(p('flip/app'), PRIVATE, false, false); // made private: stops with its next push
    await send(p('flip/app'), INTERNAL, false, false);
    await send(p('MIXED/Case'), PUBLIC, true, true); // upper case in the webhook, lower in the subscription
    await send(p('upper/lower'), PUBLIC, true, true); // lower case in the webhook, upper in the subscription
    await send(p('unwatched/public'), PUBLIC, false, false); // public, but nobody subscribed
    // Sentinels: pushes are written in id order, so once the last arrives nothing else is on its way.
    await send(p('alpha/config'), PRIVATE, true, false);
    await send(p('beta/config'), PRIVATE, false, true);

    await received(alpha, alphaGets.at(-1)!);
    await received(beta, betaGets.at(-1)!);
    expect(afters(alpha)).toEqual(alphaGets);
    expect(afters(beta)).toEqual(betaGets);

    const upper = alpha.pushes().find((x) => x.project.path === p('MIXED/Case'));
    expect(upper).toMatchObject({ project: { path: p('MIXED/Case'), defaultBranch: 'main' }, ref: 'refs/heads/main' });
  });

  test('after pushes were seen, subscribed still never tells a private project from a missing one', async () => {
    const answer = await beta.subscribe(watched());
    const access = Object.fromEntries(answer.projects.map((x) => [x.path, x.access]));
    expect(access).toMatchObject({
      [p('pub/app')]: 'granted', // last seen public
      [p('mixed/case')]: 'granted',
      [p('UPPER/Lower')]: 'granted',
      [p('alpha/config')]: 'unverified', // private, someone else's
      [p('granted-group/sub/app')]: 'unverified', // private, granted to someone else
      [p('int/app')]: 'unverified',
      [p('priv/app')]: 'unverified',
      [p('flip/app')]: 'unverified', // private now
    });
    for (const hidden of ['alpha/config', 'granted-group/sub/app', 'int/app', 'priv/app', 'flip/app']) {
      expect(access[p(hidden)]).toBe(access[p('never/seen')]);
    }
  });

  test('a grant changed on one replica applies to sockets on the other', async () => {
    const watchedPrivate = p('later/team/app');
    const isGranted = async () => (await alpha.subscribe([...watched(), watchedPrivate])).projects.find((x) => x.path === watchedPrivate)!.access;
    expect(await isGranted()).toBe('unverified');
    const before = await push(ingress, watchedPrivate, PRIVATE);

    expect((await ingress.admin('PUT', `/agents/${alphaId}/grants`, { groups: [p('granted-group'), p('later')] })).status).toBe(200);
    await eventually(isGranted, (access) => access === 'granted');
    const granted = await push(ingress, watchedPrivate, PRIVATE);
    await received(alpha, granted.after);

    expect((await ingress.admin('PUT', `/agents/${alphaId}/grants`, { groups: [p('granted-group')] })).status).toBe(200);
    await eventually(isGranted, (access) => access === 'unverified');
    const revoked = await push(ingress, watchedPrivate, PRIVATE);
    const sentinel = await push(ingress, p('alpha/config'), PRIVATE);
    await received(alpha, sentinel.after);
    expect(afters(alpha)).toContain(granted.after);
    expect(afters(alpha)).not.toContain(before.after);
    expect(afters(alpha)).not.toContain(revoked.after);
  });

  test('the event log counts deliveries across replicas', async () => {
    const count = async (path: string) => {
      const { status, body } = await a.admin('GET', `/events?project=${encodeURIComponent(path)}&limit=100`);
      expect(status).toBe(200);
      return (body.events as { projectPath: string; visibility: number | null; deliveredCount: number }[]).map((e) => e.deliveredCount);
    };
    // pub/app went to both agents; priv/app to none; flip/app public once (2), then private twice (0).
    await eventually(() => count(p('pub/app')), (c) => c.join() === '2');
    await eventually(() => count(p('flip/app')), (c) => c.join() === '2,0,0');
    expect(await count(p('priv/app'))).toEqual([0]);
    expect(await count(p('int/app'))).toEqual([0]);
  });

  afterAll(async () => {
    await alpha?.close();
    await beta?.close();
  });
});

test('metrics: connections, pushes delivered and fan-out latency on the replica holding the socket', async () => {
  const agent = await a.createAgent('metrics-agent', 'metrics/config');
  const before = {
    connections: await metric(b, 'kasgate_agent_connections'),
    delivered: await metric(b, 'kasgate_pushes_delivered_total'),
    latency: await metric(b, 'kasgate_fanout_latency_seconds_count'),
    deliveredOnA: await metric(a, 'kasgate_pushes_delivered_total'),
  };
  const first = await connectAgent(b.wsUrl, agent.token);
  const second = await connectAgent(b.wsUrl, agent.token);
  await first.subscribe(['metrics/config']);
  await second.subscribe(['metrics/config']);
  expect(await metric(b, 'kasgate_agent_connections')).toBe(before.connections + 2);

  const pushes = [await push(a, 'metrics/config', PRIVATE), await push(a, 'metrics/config', PRIVATE)];
  await received(first, pushes[1]!.after);
  await received(second, pushes[1]!.after);
  expect(await metric(b, 'kasgate_pushes_delivered_total')).toBe(before.delivered + 4);
  expect(await metric(b, 'kasgate_fanout_latency_seconds_count')).toBe(before.latency + 2);
  expect(await metric(b, 'kasgate_fanout_latency_seconds_bucket', 'le="+Inf"')).toBeGreaterThanOrEqual(before.latency + 2);
  expect(await metric(a, 'kasgate_pushes_delivered_total')).toBe(before.deliveredOnA); // nobody subscribed there

  await first.close();
  await eventually(() => metric(b, 'kasgate_agent_connections'), (n) => n === before.connections + 1);
  await second.close();
  await eventually(() => metric(b, 'kasgate_agent_connections'), (n) => n === before.connections);
});
