/**
 * Per-agent deliveries: first delivery per event and agent, however many connections, replays and
 * agents; and a delivery racing the agent's first status write still gets its deployments.
 */
import { expect, test } from 'vitest';
import { connectAgent, eventually, type TestAgent } from '../support/agent-client.js';
import { useGateway } from '../support/gateway.js';
import { nextProjectId, pushBody } from '../support/fixtures.js';
import { gitRepository, kustomization, newSha } from '../support/flux-status.js';
import { queryInSchema } from '../support/isolation.js';
import { eventOf, newProject, push, reportingAgent, waitForStates } from './support.js';

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

test('a push to a project that 150 reporting agents deploy opens a deployment on each of them', { timeout: 60_000 }, async () => {
  const project = newProject();
  const before = newSha();
  const reporting = [];
  for (let i = 0; i < 150; i += 25) {
    reporting.push(...(await Promise.all(Array.from({ length: 25 }, (_, j) => reportingAgent(gw, `many-${i + j}`, project)))));
  }
  for (const { reporter } of reporting) {
    const source = gitRepository('app', { project: project.path, sha: before });
    reporter.put(source, kustomization('apps', { source, applied: before })).full();
  }
  for (const { id } of reporting) {
    await eventually(async () => (await gw.admin('GET', `/agents/${id}/objects`)).body.objects.length, (n) => n === 2);
  }
  const res = await gw.postWebhook(pushBody({ projectId: project.id, path: project.path, after: newSha(), visibility: 0 }));
  const { eventId } = (await res.json()) as { eventId: string };
  const event = await eventually(() => eventOf(gw, eventId), (e) => e.deployments.length === 150, 20_000);
  expect(new Set(event.deployments.map((d) => d.agent.id))).toEqual(new Set(reporting.map((r) => r.id)));
  expect(event.deployments.every((d) => d.state === 'pending')).toBe(true);
  await Promise.all(reporting.map((r) => r.agent.close()));
});

test('a deleted agent is no longer listed among an event\'s deliveries; the others stay', async () => {
  const projectId = nextProjectId();
  const path = `group/deleted-${projectId}`;
  const kept = await gw.createAgent(`kept-${projectId}`, path);
  const gone = await gw.createAgent(`gone-${projectId}`, path);
  const sockets = await Promise.all([kept, gone].map((a) => connectAgent(gw.wsUrl, a.token)));
  await Promise.all(sockets.map((s) => s.subscribe([path])));
  const eventId = await postPush(path, projectId);
  await eventually(() => eventOf(gw, eventId), (e) => e.deliveries.length === 2);
  expect((await gw.admin('DELETE', `/agents/${gone.id}`)).status).toBe(204);
  expect((await eventOf(gw, eventId)).deliveries.map((d) => d.agent.id)).toEqual([kept.id]);
  for (const s of sockets) await s.close();
});

test("a push delivered while the agent's first objects are being stored still gets its deployments", { timeout: 30_000 }, async () => {
  const project = newProject();
  // The status write's COMMIT sleeps (a deferred trigger), after it looked for deliveries and
  // found none. The delivery is written meanwhile and finds no objects. Only the status write's
  // second look, after its commit, can make the deployment.
  await queryInSchema(gw.schema, `CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(2); RETURN NULL; END $$`);
  await queryInSchema(
    gw.schema,
    `CREATE CONSTRAINT TRIGGER slow_commit AFTER INSERT ON cluster_connections DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION slow_commit()`,
  );
  const committing = async () =>
    (await queryInSchema(gw.schema, `SELECT 1 FROM pg_stat_activity WHERE wait_event = 'PgSleep' AND query = 'COMMIT'`)).length > 0;
  try {
    const { id: agentId, agent, reporter } = await reportingAgent(gw, 'racing', project);
    const before = newSha();
    const source = gitRepository('app', { project: project.path, sha: before });
    reporter.put(source, kustomization('apps', { source, applied: before })).full();
    await eventually(committing, (yes) => yes, 5000);

    const eventId = await push(gw, agent, project, newSha());
    const delivered = await eventually(() => eventOf(gw, eventId), (e) => e.deliveries.length === 1);
    expect(delivered.deployments).toEqual([]);
    expect(await committing()).toBe(true);

    const followed = await waitForStates(gw, eventId, { apps: 'pending' });
    expect(followed.deployments).toHaveLength(1);
    expect(followed.deployments[0]).toMatchObject({ agent: { id: agentId }, object: { kind: 'Kustomization', name: 'apps' } });
    await agent.close();
  } finally {
    await queryInSchema(gw.schema, 'DROP TRIGGER slow_commit ON cluster_connections');
    await queryInSchema(gw.schema, 'DROP FUNCTION slow_commit()');
  }
});
