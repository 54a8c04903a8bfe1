/**
 * The status page in a real browser (Debian's chromium through playwright-core), against real
 * gateways on real Postgres and Redis, with real protocol agents and real webhooks.
 */
import { describe, expect, test } from 'vitest';
import { useGateway, useReplicaPair } from '../support/gateway.js';
import { connectAgent, type TestAgent } from '../support/agent-client.js';
import { nextProjectId, pushBody } from '../support/fixtures.js';
import { gitRepository, kustomization, newSha, StatusReporter } from '../support/flux-status.js';
import { useBrowser } from './support/browser.js';
import type { Page } from 'playwright-core';

const browser = useBrowser();

async function signInWith(page: Page, baseUrl: string, token: string): Promise<void> {
  await page.goto(`${baseUrl}/ui`);
  await page.getByLabel('Admin token').fill(token);
  await page.getByRole('button', { name: 'Sign in' }).click();
}

/** The page's document can scroll sideways: what "unusable at this width" looks like. */
const scrollsSideways = (page: Page) => page.evaluate<boolean>('document.documentElement.scrollWidth > document.documentElement.clientWidth');
/** A mark on the page's window: still there means the page was not reloaded. */
const mark = (page: Page) => page.evaluate('window.notReloaded = true');
const stillMarked = (page: Page) => page.evaluate<boolean>('window.notReloaded === true');

describe('one gateway', () => {
  const gw = useGateway();
  const project = `ui-group/app-${nextProjectId()}`;
  const projectId = nextProjectId();
  const sha = 'a1b2c3d4e5f60718293a4b5c6d7e8f9012345678';
  let agentId = '';
  let agentToken = '';
  let agent: TestAgent | undefined;
  let page: Page;

  test('sign-in: a wrong token is refused with a message, then the right one lets you in', async () => {
    const registered = await gw.createAgent('web-prod', project);
    agentId = registered.id;
    agentToken = registered.token;

    page = await browser.newPage();
    const first = await page.goto(`${gw.url}/ui`);
    expect(new URL(page.url()).pathname).toBe('/ui/login');
    expect(first?.status()).toBe(200);
    await browser.screenshot(page, 'sign-in');

    await page.getByLabel('Admin token').fill('not-the-admin-token');
    const [refused] = await Promise.all([
      page.waitForResponse((r) => r.url().endsWith('/ui/login') && r.request().method() === 'POST'),
      page.getByRole('button', { name: 'Sign in' }).click(),
    ]);
    expect(refused.status()).toBe(303);
    await page.waitForURL(/refused=1/);
    await expect.poll(() => page.getByRole('alert').textContent()).toContain('That is not the admin token.');
    expect(await page.getByLabel('Admin token').getAttribute('aria-invalid')).toBe('true');

    await page.getByLabel('Admin token').fill(gw.adminToken);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.waitForURL(`${gw.url}/ui`);
    expect(await page.getByRole('heading', { level: 1 }).textContent()).toBe('Status');
    const cookies = await browser.context.cookies(`${gw.url}/ui`);
    const session = cookies.find((c) => c.name === 'kasgate_session');
    expect(session).toMatchObject({ httpOnly: true, sameSite: 'Strict', path: '/ui', secure: false });
  });

  test('an agent is shown disconnected, then connected without a reload, with its replica and projects', async () => {
    const row = page.locator(`#agents-table tr[data-agent-id="${agentId}"]`);
    await expect.poll(() => row.locator('td').first().textContent()).toContain('disconnected');
    expect(await row.textContent()).toContain('never connected');
    await mark(page);
    await expect.poll(() => page.locator('#live-indicator').textContent()).toContain('Live updates: on');

    agent = await connectAgent(gw.wsUrl, agentToken);
    await agent.subscribe([project]);
    await expect.poll(() => row.getAttribute('class'), { timeout: 2000 }).toBe('is-connected');
    expect(await row.locator('td').first().textContent()).toBe('● connected');
    expect(await row.locator('td').nth(1).textContent()).toContain(gw.ctx.config.replicaId);
    await expect.poll(() => row.locator('td').nth(3).textContent()).toBe('1');
    expect(await stillMarked(page)).toBe(true);
  });

  test('a webhook posted: its row appears without a reload within 2 s, and then shows its delivery', async () => {
    const posted = Date.now();
    const response = await gw.postWebhook(pushBody({ path: project, projectId, after: sha, ref: 'refs/heads/main' }));
    expect(response.status).toBe(202);
    const { eventId } = (await response.json()) as { eventId: string };
    const row = page.locator(`#events-rows tr[data-event-id="${eventId}"]`);
    await row.waitFor({ timeout: 2000 });
    expect(Date.now() - posted).toBeLessThan(2000);
    const cells = await row.locator('th, td').allTextContents();
    expect(cells.slice(0, 5)).toEqual([`#${eventId}`, project, 'main', sha.slice(0, 8), 'push']);
    expect(cells[5]).toMatch(/\d+ s ago/);
    // The count follows the delivery's record (written within 25 ms), not a check seconds later.
    await expect.poll(() => row.locator('[data-cell="delivered"]').textContent(), { timeout: 5000 }).toBe('1 agent');
    expect(Date.now() - posted).toBeLessThan(1200);
    expect(await stillMarked(page)).toBe(true);
    await agent!.waitFor((f) => f.type === 'push' && f.eventId === eventId);
    await browser.screenshot(page, 'overview');
  });

  test('the event page shows what happened to the push', async () => {
    await page.locator('#events-rows tr[data-event-id] a').first().click();
    await page.waitForURL(/\/ui\/events\/\d+$/);
    expect(await page.getByRole('heading', { level: 1 }).textContent()).toMatch(/^Event #\d+$/);
    const facts = await page.locator('dl.facts').textContent();
    expect(facts).toContain(project);
    expect(facts).toContain(sha);
    expect(facts).toContain('main');
    const steps = await page.locator('.timeline > li .step-label').allTextContents();
    expect(steps[0]).toBe('Received');
    expect(steps[1]).toBe('Delivered to 1 agent');
    // Each agent the push reached is named with the time it was written to its socket.
    expect(await page.locator('.timeline').textContent()).toMatch(/web-prod at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC/);
    await browser.screenshot(page, 'event');
  });

  test('the agent page shows its connections, and its disconnection live', async () => {
    await page.goto(`${gw.url}/ui/agents/${agentId}`);
    expect(await page.getByRole('heading', { level: 1 }).textContent()).toBe('Agent web-prod');
    const connections = page.locator('#agent-live table');
    expect(await connections.locator('tbody tr').count()).toBe(1);
    expect(await connections.textContent()).toContain(project);
    expect(await page.locator('#grants-h').textContent()).toBe('Access');
    await expect.poll(() => page.locator('#live-indicator').textContent()).toContain('Live updates: on');
    await browser.screenshot(page, 'agent');

    await agent!.close();
    await expect.poll(() => page.locator('#agent-live .headline').textContent(), { timeout: 2000 }).toContain('disconnected');
    expect(await page.locator('#agent-live').textContent()).toContain('No live connection');
  });

  test('a fuller overview: several agents and pushes arrive live (the README screenshot)', async () => {
    await page.goto(`${gw.url}/ui`);
    const others = [];
    for (const name of ['edge-lab', 'infra-eu', 'staging']) others.push({ name, ...(await gw.createAgent(name, `platform/${name}`)) });
    await page.reload();
    await expect.poll(() => page.locator('#live-indicator').textContent()).toContain('Live updates: on');
    const live: TestAgent[] = [];
    for (const other of others.slice(1)) {
      const connected = await connectAgent(gw.wsUrl, other.token);
      await connected.subscribe([`platform/${other.name}`, 'platform/shared-charts']);
      live.push(connected);
    }
    const pushes = [
      pushBody({ path: 'platform/infra-eu', projectId: nextProjectId(), after: '3f9c2e1d7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e' }),
      pushBody({ path: 'platform/shared-charts', projectId: nextProjectId(), after: '77aa01bc2de3f45a6b7c8d9e0f1a2b3c4d5e6f70', ref: 'refs/heads/release' }),
      pushBody({ path: 'platform/staging', projectId: nextProjectId(), after: 'c0ffee00112233445566778899aabbccddeeff00' }),
    ];
    for (const body of pushes) expect((await gw.postWebhook(body)).status).toBe(202);
    await expect.poll(() => page.locator('#events-rows tr[data-event-id]').count(), { timeout: 2000 }).toBe(4);
    await expect.poll(() => page.locator('#agents-table tr.is-connected').count(), { timeout: 2000 }).toBe(2);
    expect(await page.locator('#connected-count').textContent()).toBe('2');
    await expect.poll(() => page.locator('#events-rows [data-cell="delivered"]').allTextContents(), { timeout: 5000 }).toEqual([
      '1 agent',
      '2 agents',
      '1 agent',
      '1 agent',
    ]);
    await browser.screenshot(page, 'status-page');
    for (const connected of live) await connected.close();
  });

  test('at 375 px wide every page is usable without scrolling the page sideways', async () => {
    const narrow = await browser.newPage({ width: 375, height: 812 });
    for (const path of ['/ui', `/ui/agents/${agentId}`, '/ui/events/1', '/ui/login']) {
      await narrow.goto(`${gw.url}${path}`);
      expect({ path, sideways: await scrollsSideways(narrow) }).toEqual({ path, sideways: false });
    }
    await narrow.goto(`${gw.url}/ui`);
    const search = narrow.getByRole('searchbox', { name: 'Search events by project path' });
    await search.fill('ui-group');
    await search.press('Enter');
    await narrow.waitForURL(/project=ui-group/);
    expect(await narrow.locator('#events-rows tr[data-event-id]').count()).toBe(1);
    // The tables scroll inside their own region, which the keyboard can reach.
    expect(await narrow.locator('.table-wrap').first().getAttribute('tabindex')).toBe('0');
    await browser.screenshot(narrow, 'overview-375');
    await narrow.close();
  });

  test('keyboard: the skip link, the search box and the links are reachable and show focus', async () => {
    await page.goto(`${gw.url}/ui`);
    await page.keyboard.press('Tab');
    expect(await page.evaluate<string>('document.activeElement.textContent')).toBe('Skip to the content');
    const outline = await page.evaluate<string>('getComputedStyle(document.activeElement).outlineStyle');
    expect(outline).toBe('solid');
    // Tables are real tables: a caption and column headers with scope.
    expect(await page.locator('#events-table caption').count()).toBe(1);
    // Event, project, ref, commit, kind, received, delivered to; deployments and latency from cluster state.
    expect(await page.locator('#events-table thead th[scope="col"]').count()).toBe(9);
  });

  test('sign-out ends the session: the page is behind sign-in again', async () => {
    await page.goto(`${gw.url}/ui`);
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.waitForURL(/\/ui\/login\?signed_out=1$/);
    expect(await page.getByRole('status').textContent()).toContain('You are signed out.');
    await page.goto(`${gw.url}/ui`);
    expect(new URL(page.url()).pathname).toBe('/ui/login');
    expect((await browser.context.cookies(`${gw.url}/ui`)).find((c) => c.name === 'kasgate_session')).toBeUndefined();
  });

  test('no console errors, and no request to any other host', () => {
    expect(browser.errors).toEqual([]);
    const origin = new URL(gw.url).origin;
    expect(browser.requests.length).toBeGreaterThan(10);
    expect(browser.requests.filter((url) => new URL(url).origin !== origin)).toEqual([]);
  });
});

describe('a push followed to the cluster', () => {
  const gw = useGateway();

  test('the overview and the event page follow a deployment live, pending → fetched → applied, without a reload', async () => {
    const projectId = nextProjectId();
    const path = `ui-group/deploy-${projectId}`;
    const registered = await gw.createAgent('prod-eu', path);
    const agent = await connectAgent(gw.wsUrl, registered.token);
    await agent.subscribe([path]);
    const reporter = new StatusReporter(agent);
    const before = newSha();
    const source = gitRepository('app', { project: path, sha: before });
    reporter.put(source, kustomization('apps', { source, applied: before })).full();
    await expect.poll(async () => (await gw.admin('GET', `/agents/${registered.id}/objects`)).body.objects.length).toBe(2);

    const page = await browser.newPage();
    await signInWith(page, gw.url, gw.adminToken);
    await page.waitForURL(`${gw.url}/ui`);
    await expect.poll(() => page.locator('#live-indicator').textContent()).toContain('Live updates: on');
    await mark(page);

    const sha = newSha();
    const response = await gw.postWebhook(pushBody({ path, projectId, after: sha, ref: 'refs/heads/main' }));
    const { eventId } = (await response.json()) as { eventId: string };
    await agent.waitFor((f) => f.type === 'push' && f.eventId === eventId);
    const row = page.locator(`#events-rows tr[data-event-id="${eventId}"]`);
    await expect.poll(() => row.locator('[data-cell="deployments"]').textContent(), { timeout: 5000 }).toContain('1 pending');
    expect(await row.locator('[data-cell="latency"]').textContent()).toBe('–');

    await row.locator('a').first().click();
    await page.waitForURL(`${gw.url}/ui/events/${eventId}`);
    await mark(page);
    const step = page.locator('.timeline > li', { hasText: 'Kustomization flux-system/apps' });
    expect(await step.locator('p').first().textContent()).toMatch(/^prod-eu: . pending/);
    expect(await step.textContent()).toContain('Waiting for GitRepository flux-system/app to fetch the commit.');
    // "pending" once: the state, not again as the only entry of its history.
    expect(await step.locator('.substeps li').count()).toBe(0);
    await browser.screenshot(page, 'event-pending');

    // What Flux does: the source fetches the commit, then the Kustomization applies it.
    const fetched = gitRepository('app', { project: path, sha });
    reporter.update(fetched);
    await expect.poll(() => step.locator('p').first().textContent(), { timeout: 5000 }).toMatch(/^prod-eu: . fetched/);
    expect(await step.textContent()).toContain('GitRepository flux-system/app has it; waiting for Kustomization flux-system/apps to apply it.');
    reporter.update(kustomization('apps', { source: fetched, applied: sha }));
    await expect.poll(() => step.locator('p').first().textContent(), { timeout: 5000 }).toMatch(/^prod-eu: . applied after \d/);
    expect(await step.textContent()).toContain('ReconciliationSucceeded: Applied revision: main@sha1:');
    expect(await step.locator('.substeps li').allTextContents()).toEqual([
      expect.stringMatching(/^. pending \d{4}-/),
      expect.stringMatching(/^. fetched \d{4}-/),
      expect.stringMatching(/^. applied \d{4}-/),
    ]);
    expect(await step.textContent()).toContain(`revision main@sha1:${sha}`);
    expect(await stillMarked(page)).toBe(true);
    await browser.screenshot(page, 'event-applied');

    await page.goto(`${gw.url}/ui`);
    const done = page.locator(`#events-rows tr[data-event-id="${eventId}"]`);
    expect(await done.locator('[data-cell="deployments"]').textContent()).toContain('1 applied');
    expect(await done.locator('[data-cell="latency"]').textContent()).toMatch(/\d/);
    await agent.close();
  });
});

describe('two replicas', () => {
  const [a, b] = useReplicaPair();

  test('a browser on one replica sees an agent connect to the other, and a webhook taken by the other, live', async () => {
    const project = `ui-pair/app-${nextProjectId()}`;
    const registered = await a.createAgent('pair-agent', project);
    const page = await browser.newPage();
    await signInWith(page, b.url, b.adminToken);
    await page.waitForURL(`${b.url}/ui`);
    await expect.poll(() => page.locator('#live-indicator').textContent()).toContain('Live updates: on');
    const row = page.locator(`#agents-table tr[data-agent-id="${registered.id}"]`);
    expect(await row.locator('td').first().textContent()).toContain('disconnected');

    const agent = await connectAgent(a.wsUrl, registered.token);
    await agent.subscribe([project]);
    await expect.poll(() => row.locator('td').nth(1).textContent(), { timeout: 2000 }).toBe(a.ctx.config.replicaId);
    expect(await row.locator('td').first().textContent()).toBe('● connected');

    const response = await a.postWebhook(pushBody({ path: project, projectId: nextProjectId() }));
    const { eventId } = (await response.json()) as { eventId: string };
    await page.locator(`#events-rows tr[data-event-id="${eventId}"]`).waitFor({ timeout: 2000 });
    await expect.poll(() => page.locator(`tr[data-event-id="${eventId}"] [data-cell="delivered"]`).textContent(), { timeout: 5000 }).toBe('1 agent');

    await agent.close();
    await expect.poll(() => row.locator('td').first().textContent(), { timeout: 2000 }).toBe('✕ disconnected');
    await page.close();
  });
});
