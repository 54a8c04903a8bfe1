/**
 * Cluster state through the agent socket: status frames from protocol-level agents, read back
 * with GET /api/v1/agents/{id}/objects. Several connections, stale objects, parts, the limit.
 */
import { describe, expect, test } from 'vitest';
import { connectAgent, eventually, type TestAgent } from '../support/agent-client.js';
import { useGateway, type TestGateway } from '../support/gateway.js';
import { gitRepository, kustomization, StatusReporter, type ObjectInput } from '../support/flux-status.js';

interface ObjectsAnswer {
  objects: (ObjectInput & { reportedAt: string; stale: boolean })[];
  truncated: boolean;
}

async function objectsOf(gw: TestGateway, agentId: string): Promise<ObjectsAnswer> {
  const { status, body } = await gw.admin('GET', `/agents/${agentId}/objects`);
  expect(status).toBe(200);
  return body;
}

const names = (answer: ObjectsAnswer) => answer.objects.map((o) => `${o.kind}/${o.name}${o.stale ? ' (stale)' : ''}`);

function waitForNames(gw: TestGateway, agentId: string, expected: string[]) {
  return eventually(() => objectsOf(gw, agentId), (a) => JSON.stringify(names(a)) === JSON.stringify(expected));
}

async function connected(gw: TestGateway, token: string): Promise<{ agent: TestAgent; reporter: StatusReporter }> {
  const agent = await connectAgent(gw.wsUrl, token);
  await agent.subscribe(['group/app']);
  return { agent, reporter: new StatusReporter(agent) };
}

const repo = (name: string) => gitRepository(name, { project: 'group/app', sha: 'a'.repeat(40) });

describe('GET /api/v1/agents/{id}/objects', () => {
  const gw = useGateway();

  test('an unknown or malformed agent id is a 404; an agent that reported nothing has no objects', async () => {
    for (const id of ['00000000-0000-4000-8000-000000000000', 'not-a-uuid']) {
      const { status, body } = await gw.admin('GET', `/agents/${id}/objects`);
      expect({ status, code: body.error.code }).toEqual({ status: 404, code: 'not_found' });
    }
    const agent = await gw.createAgent('quiet', 'group/app');
    expect(await objectsOf(gw, agent.id)).toEqual({ objects: [], truncated: false });
  });

  test('a full set is stored as reported, with reportedAt; the fields the agent left out read as null', async () => {
    const registered = await gw.createAgent('reports', 'group/app');
    const { agent, reporter } = await connected(gw, registered.token);
    const source = repo('app');
    reporter.put(source, kustomization('app', { source, applied: 'a'.repeat(40) })).full();
    const answer = await waitForNames(gw, registered.id, ['GitRepository/app', 'Kustomization/app']);
    expect(answer.truncated).toBe(false);
    expect(answer.objects[0]).toMatchObject({
      ...source,
      originRevision: null,
      originSource: null,
      attemptedRevision: null,
      sourceRef: null,
      suspended: false,
      stale: false,
    });
    expect(Date.parse(answer.objects[0]!.reportedAt)).toBeGreaterThan(Date.now() - 60_000);
    expect(answer.objects[1]).toMatchObject({ sourceRef: { kind: 'GitRepository', namespace: 'flux-system', name: 'app' }, ready: 'True' });
    await agent.close();
  });

  test('two connections of one agent do not erase each other; a closed one leaves its objects stale until a later full set', async () => {
    const registered = await gw.createAgent('two-pods', 'group/app');
    const a = await connected(gw, registered.token);
    const b = await connected(gw, registered.token);
    a.reporter.put(repo('x'), repo('y')).full();
    b.reporter.put(repo('y'), repo('z')).full();
    await waitForNames(gw, registered.id, ['GitRepository/x', 'GitRepository/y', 'GitRepository/z']);

    // A's new full set drops x and y from A only: y is still B's.
    a.reporter.objects.clear();
    a.reporter.full();
    await waitForNames(gw, registered.id, ['GitRepository/y', 'GitRepository/z']);

    a.reporter.update(repo('w'));
    await waitForNames(gw, registered.id, ['GitRepository/w', 'GitRepository/y', 'GitRepository/z']);
    await a.agent.close();
    await waitForNames(gw, registered.id, ['GitRepository/w (stale)', 'GitRepository/y', 'GitRepository/z']);

    // A live connection reporting it makes it current again.
    b.reporter.update(repo('w'));
    await waitForNames(gw, registered.id, ['GitRepository/w', 'GitRepository/y', 'GitRepository/z']);

    // B goes too; everything is stale, then a new connection's full set is the picture.
    await b.agent.close();
    await waitForNames(gw, registered.id, ['GitRepository/w (stale)', 'GitRepository/y (stale)', 'GitRepository/z (stale)']);
    const c = await connected(gw, registered.token);
    c.reporter.put(repo('y')).full();
    await waitForNames(gw, registered.id, ['GitRepository/y']);

    // A deletion removes the object.
    c.reporter.remove(repo('y'));
    await waitForNames(gw, registered.id, []);
    expect(await objectsOf(gw, registered.id)).toEqual({ objects: [], truncated: false });
    await c.agent.close();
  });

  test('a full set in parts replaces nothing until its last part; a part out of order is refused and changes nothing', async () => {
    const registered = await gw.createAgent('parts', 'group/app');
    const { agent, reporter } = await connected(gw, registered.token);
    reporter.put(repo('old')).full();
    await waitForNames(gw, registered.id, ['GitRepository/old']);

    const send = (objects: ObjectInput[], part: number, parts: number) => agent.send({ type: 'status', full: true, objects, part, parts });
    send([repo('p1')], 1, 3);
    send([repo('p2')], 2, 3);
    // A change during the assembly is applied after it.
    reporter.update(repo('during'));
    await new Promise((r) => setTimeout(r, 300));
    expect(names(await objectsOf(gw, registered.id))).toEqual(['GitRepository/old']);
    send([repo('p3')], 3, 3);
    await waitForNames(gw, registered.id, ['GitRepository/during', 'GitRepository/p1', 'GitRepository/p2', 'GitRepository/p3']);

    send([repo('q1')], 1, 3);
    send([repo('q3')], 3, 3);
    const error = await agent.waitFor((f) => f.type === 'error');
    expect(error).toMatchObject({ code: 'status_part_out_of_order' });
    expect((error as { message: string }).message).toMatch(/part 3 of 3.*expected part 2 of 3/);
    // The assembly was dropped: a late part 2 does not complete it either.
    send([repo('q2')], 2, 3);
    await agent.waitFor((f) => f.type === 'error' && agent.frames.filter((x) => x.type === 'error').length === 2);
    await new Promise((r) => setTimeout(r, 200));
    expect(names(await objectsOf(gw, registered.id))).toEqual(['GitRepository/during', 'GitRepository/p1', 'GitRepository/p2', 'GitRepository/p3']);

    // A new full set starts over.
    send([repo('r1')], 1, 2);
    send([repo('r2')], 2, 2);
    await waitForNames(gw, registered.id, ['GitRepository/r1', 'GitRepository/r2']);
    expect(agent.ws.readyState).toBe(agent.ws.OPEN);
    await agent.close();
  });

  test('bad status frames get an error frame naming the field, and the socket stays open', async () => {
    const registered = await gw.createAgent('bad-status', 'group/app');
    const { agent, reporter } = await connected(gw, registered.token);
    agent.send({ type: 'status', full: true, objects: [{ ...repo('x'), kind: 'Deployment' }] });
    expect(await agent.waitFor((f) => f.type === 'error')).toMatchObject({ code: 'invalid_frame', message: expect.stringMatching(/^objects\.0/) });
    agent.send({ type: 'status', full: false, objects: [], part: 1, parts: 2 });
    expect(await agent.waitFor((f) => f.type === 'error' && /part/.test(f.message))).toMatchObject({ code: 'invalid_frame' });
    reporter.put(repo('fine')).full();
    await waitForNames(gw, registered.id, ['GitRepository/fine']);
    await agent.close();
  });

  test("the agent's own truncated flag is stored and shown", async () => {
    const registered = await gw.createAgent('says-truncated', 'group/app');
    const { agent, reporter } = await connected(gw, registered.token);
    reporter.put(repo('one')).full({ truncated: true });
    const answer = await eventually(() => objectsOf(gw, registered.id), (a) => a.objects.length === 1);
    expect(answer.truncated).toBe(true);
    reporter.full({ truncated: false });
    await eventually(() => objectsOf(gw, registered.id), (a) => !a.truncated);
    await agent.close();
  });
});

describe('KASGATE_MAX_STATUS_OBJECTS', () => {
  const gw = useGateway({ env: { KASGATE_MAX_STATUS_OBJECTS: '3' } });

  test('objects past the limit per agent are refused with an error frame, and the agent shows truncated', async () => {
    const registered = await gw.createAgent('big', 'group/app');
    const a = await connected(gw, registered.token);
    const b = await connected(gw, registered.token);
    a.reporter.put(repo('a1'), repo('a2')).full();
    await waitForNames(gw, registered.id, ['GitRepository/a1', 'GitRepository/a2']);
    // B's set shares a2; only one more distinct object fits.
    b.reporter.put(repo('a2'), repo('b1'), repo('b2'), repo('b3')).full();
    const error = await b.agent.waitFor((f) => f.type === 'error');
    expect(error).toMatchObject({ code: 'too_many_objects', message: expect.stringContaining('2 object(s) not stored: at most 3') });
    const answer = await eventually(() => objectsOf(gw, registered.id), (x) => x.objects.length === 3);
    expect(answer.truncated).toBe(true);
    expect(names(answer)).toEqual(['GitRepository/a1', 'GitRepository/a2', 'GitRepository/b1']);
    // Changes of objects already stored still land.
    b.reporter.update({ ...repo('b1'), ready: 'False' });
    await eventually(() => objectsOf(gw, registered.id), (x) => x.objects.find((o) => o.name === 'b1')?.ready === 'False');
    expect(b.agent.ws.readyState).toBe(b.agent.ws.OPEN);
    await a.agent.close();
    await b.agent.close();
  });
});
