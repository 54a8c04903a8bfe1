/** Pushes followed to deployments: webhook in, push frame out, GET /api/v1/events/{id} back. */
import { expect } from 'vitest';
import { connectAgent, eventually, type TestAgent } from '../support/agent-client.js';
import type { TestGateway } from '../support/gateway.js';
import { fixtures, nextProjectId, pushBody } from '../support/fixtures.js';
import { StatusReporter } from '../support/flux-status.js';
import type { FakeGitLab } from '../support/fake-gitlab.js';
import { randomUUID } from 'node:crypto';
import type { Delivery, Deployment } from '../../src/deployments/deployment-store.js';

/** A deployment as GET /api/v1/events/{id} shows it. */
export type DeploymentView = Deployment;

export interface EventView {
  id: string;
  receivedAt: string;
  deliveries: Delivery[];
  deployments: DeploymentView[];
}

export async function eventOf(gw: TestGateway, id: string): Promise<EventView> {
  const { status, body } = await gw.admin('GET', `/events/${id}`);
  expect(status).toBe(200);
  return body;
}

/** Polls the event until every deployment listed in `states` (object name → state) is there. */
export function waitForStates(gw: TestGateway, id: string, states: Record<string, string>, timeoutMs = 8000): Promise<EventView> {
  return eventually(
    () => eventOf(gw, id),
    (e) => Object.entries(states).every(([name, state]) => e.deployments.some((d) => d.object.name === name && d.state === state)),
    timeoutMs,
  );
}

export const timelineOf = (d: DeploymentView) => d.timeline.map((t) => t.state);

export interface Project {
  id: number;
  path: string;
}

/** A project, known to the GitLab stand-in too. */
export function newProject(gitlab?: FakeGitLab, name = 'app'): Project {
  const id = nextProjectId();
  const project = { id, path: `group/${name}-${id}` };
  gitlab?.addProject({ ...project, defaultBranch: 'main' });
  return project;
}

/** An agent (config project = the project, so it may see it) connected and subscribed. */
export async function reportingAgent(gw: TestGateway, name: string, project: Project): Promise<{ id: string; agent: TestAgent; reporter: StatusReporter }> {
  const registered = await gw.createAgent(`${name}-${project.id}`, project.path);
  const agent = await connectAgent(gw.wsUrl, registered.token);
  await agent.subscribe([project.path]);
  return { id: registered.id, agent, reporter: new StatusReporter(agent) };
}

/** Posts a push of `sha` to `ref` and waits for the agent to get it; returns the event id. */
export async function push(gw: TestGateway, agent: TestAgent, project: Project, sha: string, ref = 'refs/heads/main'): Promise<string> {
  const res = await gw.postWebhook(pushBody({ projectId: project.id, path: project.path, ref, after: sha, visibility: 0 }), {
    'idempotency-key': randomUUID(),
  });
  expect(res.status).toBe(202);
  const { eventId } = (await res.json()) as { eventId: string };
  await agent.waitFor((f) => f.type === 'push' && f.eventId === eventId);
  return eventId;
}

/** A tag push whose `after` is the tag object and `checkout_sha` the commit it points at. */
export async function pushTag(gw: TestGateway, agent: TestAgent, project: Project, tag: string, tagObject: string, commit: string): Promise<string> {
  const body = JSON.parse(fixtures.tagPush.raw.toString());
  body.project.path_with_namespace = project.path;
  body.project.id = body.project_id = project.id;
  body.ref = `refs/tags/${tag}`;
  body.after = tagObject;
  body.checkout_sha = commit;
  const res = await gw.postWebhook(body, { 'x-gitlab-event': 'Tag Push Hook', 'idempotency-key': randomUUID() });
  expect(res.status).toBe(202);
  const { eventId } = (await res.json()) as { eventId: string };
  await agent.waitFor((f) => f.type === 'push' && f.eventId === eventId);
  return eventId;
}

/** The commit statuses the stand-in recorded for `sha`, as "name state" lines per name, in order. */
export function statusLines(gitlab: FakeGitLab, sha: string): Record<string, string[]> {
  const byName: Record<string, string[]> = {};
  for (const s of gitlab.statusesOf(sha)) (byName[s.name] ??= []).push(s.state);
  return byName;
}

export function waitForStatuses(gitlab: FakeGitLab, sha: string, expected: Record<string, string[]>, timeoutMs = 8000) {
  return eventually(
    () => statusLines(gitlab, sha),
    (lines) => JSON.stringify(Object.fromEntries(Object.entries(lines).sort())) === JSON.stringify(Object.fromEntries(Object.entries(expected).sort())),
    timeoutMs,
  );
}

/** One sample value of a metric in the gateway's exposition, 0 when absent. */
export async function metric(gw: TestGateway, line: RegExp): Promise<number> {
  const text = await (await fetch(`${gw.url}/metrics`)).text();
  const found = text.split('\n').find((l) => line.test(l));
  return found ? Number(found.split(' ').at(-1)) : 0;
}
