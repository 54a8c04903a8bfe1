/** `kasgate grants` and `kasgate events`, as a process against a real gateway. */
import { describe, expect, test } from 'vitest';
import { connectAgent, eventually } from '../support/agent-client.js';
import { fixtures, nextProjectId, pushBody } from '../support/fixtures.js';
import { useGateway } from '../support/gateway.js';
import { adminCli } from '../support/kasgate-cli.js';

const gateway = useGateway();
const kasgate = (...args: string[]) => adminCli(gateway)(...args);

describe('grants', () => {
  test('set replaces the grants, a connected agent sees the project as granted at once; show and --json agree', async () => {
    const { token } = await gateway.createAgent('granted', 'platform/granted');
    const agent = await connectAgent(gateway.wsUrl, token);
    const before = await agent.subscribe(['secret/app']);
    expect(before.projects).toEqual([{ path: 'secret/app', access: 'unverified' }]);

    const set = await kasgate('grants', 'set', 'granted', '--project', 'secret/app', '--project', 'secret/other', '--group', 'shared');
    expect(set.code).toBe(0);
    expect(set.stdout).toBe('Agent:    granted\nProjects: secret/app, secret/other\nGroups:   shared\n');
    const after = await agent.subscribe(['secret/app']);
    expect(after.projects).toEqual([{ path: 'secret/app', access: 'granted' }]);

    const shown = await kasgate('grants', 'show', 'granted', '--json');
    expect(JSON.parse(shown.stdout)).toEqual({ projects: ['secret/app', 'secret/other'], groups: ['shared'] });

    // set replaces: what is not given is gone.
    await kasgate('grants', 'set', 'granted', '--group', 'shared');
    expect(JSON.parse((await kasgate('grants', 'show', 'granted', '--json')).stdout)).toEqual({ projects: [], groups: ['shared'] });
    await agent.close();
  });

  test('set with nothing to set refuses (exit 2) instead of silently removing every grant; --clear removes them', async () => {
    await gateway.createAgent('clearing', 'platform/clearing');
    await kasgate('grants', 'set', 'clearing', '--project', 'a/b');
    const empty = await kasgate('grants', 'set', 'clearing');
    expect(empty.code).toBe(2);
    expect(empty.stderr).toMatch(/give at least one --project or --group \(or --clear/);
    expect(JSON.parse((await kasgate('grants', 'show', 'clearing', '--json')).stdout).projects).toEqual(['a/b']);

    const mixed = await kasgate('grants', 'set', 'clearing', '--clear', '--project', 'a/b');
    expect(mixed.code).toBe(2);
    const cleared = await kasgate('grants', 'set', 'clearing', '--clear');
    expect(cleared.code).toBe(0);
    expect(cleared.stdout).toMatch(/^Projects: -$/m);
  });

  test('a path the API rejects exits 2 with its message', async () => {
    await gateway.createAgent('picky', 'platform/picky');
    const bad = await kasgate('grants', 'set', 'picky', '--project', 'not a path');
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/^kasgate: body\.projects\.0: /);
  });
});

describe('events', () => {
  test('list shows each push: id, project, ref, short sha, user, deliveries; --project, --limit and --after page through', async () => {
    const { token } = await gateway.createAgent('listener', 'events/app');
    const agent = await connectAgent(gateway.wsUrl, token);
    await agent.subscribe(['events/app']);
    const shas = ['1111111111111111111111111111111111111111', '2222222222222222222222222222222222222222'];
    const projectId = nextProjectId();
    for (const after of shas) {
      const response = await gateway.postWebhook(pushBody({ path: 'events/app', projectId, after, visibility: 0 }));
      expect(response.status).toBe(202);
    }
    expect((await gateway.postWebhook(pushBody({ path: 'events/other', projectId: nextProjectId(), visibility: 0 }))).status).toBe(202);
    await agent.waitFor(() => agent.pushes().length === 2);
    // Delivery counts are written once a second, off the delivery path.
    await eventually(
      () => gateway.admin('GET', `/events?project=${projectId}`),
      (r) => r.body.events.length === 2 && r.body.events.every((e: { deliveredCount: number }) => e.deliveredCount === 1),
    );

    const listed = await kasgate('events', 'list', '--project', 'Events/App');
    expect(listed.code).toBe(0);
    const lines = listed.stdout.trim().split('\n');
    expect(lines[0]!.split(/ {3,}/)).toEqual(['ID', 'PROJECT', 'REF', 'SHA', 'USER', 'DELIVERED', 'AGE']);
    expect(lines.slice(1).map((l) => l.split(/ {3,}/).slice(1, 6))).toEqual([
      ['events/app', 'refs/heads/main', '11111111', 'jsmith', '1'],
      ['events/app', 'refs/heads/main', '22222222', 'jsmith', '1'],
    ]);

    const first = await kasgate('events', 'list', '--limit', '1', '--json');
    const page = JSON.parse(first.stdout) as { events: { id: string }[]; nextAfter: string };
    expect(page.events).toHaveLength(1);
    const next = await kasgate('events', 'list', '--limit', '1', '--after', page.nextAfter);
    expect(next.stderr).toMatch(/^More: kasgate events list --after \d+$/m);
    expect(next.stdout).toMatch(/events\/app .* 22222222 /);

    const bad = await kasgate('events', 'list', '--limit', 'lots');
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--limit: must be a whole number from 1 to 1000/);
    await agent.close();
  });

  test('list shows an artifact event with the ref and commit its pipeline ran on', async () => {
    const body = JSON.parse(fixtures.pipeline.raw.toString());
    const projectId = nextProjectId();
    body.project.id = projectId;
    body.project.path_with_namespace = `events/pipeline-${projectId}`;
    const response = await gateway.postWebhook(body, { 'x-gitlab-event': 'Pipeline Hook' });
    expect(response.status).toBe(202);
    const listed = await kasgate('events', 'list', '--project', String(projectId));
    const [, row] = listed.stdout.trim().split('\n');
    expect(row!.split(/ {3,}/).slice(1, 5)).toEqual([`events/pipeline-${projectId}`, 'refs/heads/master', 'bcbb5ec3', 'root']);
  });
});
