/**
 * The status page over plain HTTP (no browser): headers, cookies, sign-in limits, CSRF, sessions
 * across replicas and their end, the live feed's frames, paging and search over large tables, and
 * the places where cluster state plugs in.
 */
import { describe, expect, test } from 'vitest';
import { useGateway, useReplicaPair } from '../support/gateway.js';
import { queryInSchema } from '../support/isolation.js';
import { connectAgent } from '../support/agent-client.js';
import { nextProjectId, pushBody } from '../support/fixtures.js';
import type { ClusterView } from '../../src/ui/cluster-view.js';
import { CookieJar, csrfOf, fetchWithJar, openSse, signIn } from './support/session.js';

const form = (fields: Record<string, string>) => ({
  method: 'POST',
  headers: { 'content-type': 'application/x-www-form-urlencoded' },
  body: new URLSearchParams(fields).toString(),
});

async function signedIn(baseUrl: string, token: string): Promise<CookieJar> {
  const jar = new CookieJar();
  const response = await signIn(baseUrl, jar, token);
  expect(response.status).toBe(303);
  return jar;
}

const rowsOf = (page: string, attribute: string) => [...page.matchAll(new RegExp(`<tr ${attribute}="([^"]+)"`, 'g'))].map((m) => m[1]!);

describe('one gateway behind a proxy', () => {
  const gw = useGateway({ env: { KASGATE_TRUST_PROXY: 'true', KASGATE_AUTH_FAILURES_PER_MINUTE: '3' } });

  test('pages send the headers a careful admin expects', async () => {
    const response = await fetch(`${gw.url}/ui/login`);
    expect(response.status).toBe(200);
    const h = Object.fromEntries(response.headers);
    expect(h['content-security-policy']).toBe(
      "default-src 'none';script-src 'self';style-src 'self';img-src 'self';connect-src 'self';form-action 'self';frame-ancestors 'none';base-uri 'none';object-src 'none'",
    );
    expect(h).toMatchObject({
      'x-frame-options': 'DENY',
      'x-content-type-options': 'nosniff',
      'referrer-policy': 'no-referrer',
      'cross-origin-opener-policy': 'same-origin',
      'cross-origin-resource-policy': 'same-origin',
      'cache-control': 'no-store',
      'content-type': 'text/html; charset=utf-8',
    });
    expect(h['strict-transport-security']).toBe('max-age=31536000');
    const page = await response.text();
    // Every asset is the gateway's own, and no script is inline.
    const sources = [...page.matchAll(/(?:src|href)="([^"#][^"]*)"/g)].map((m) => m[1]!);
    expect(sources.length).toBeGreaterThanOrEqual(3);
    expect(sources.every((s) => s.startsWith('/ui'))).toBe(true);
    expect(page).not.toMatch(/<script>|<script [^>]*>[^<]+<\/script>|style="/);
  });

  test('assets are served with long cache headers under content-hashed names; others are 404', async () => {
    const page = await (await fetch(`${gw.url}/ui/login`)).text();
    const css = /href="(\/ui\/assets\/status\.[0-9a-f]{12}\.css)"/.exec(page)![1]!;
    const response = await fetch(`${gw.url}${css}`);
    expect(response.status).toBe(200);
    expect(response.headers.get('cache-control')).toBe('public, max-age=31536000, immutable');
    expect(response.headers.get('content-type')).toBe('text/css; charset=utf-8');
    expect((await fetch(`${gw.url}/ui/assets/status.000000000000.css`)).status).toBe(404);
  });

  test('the session cookie is HttpOnly, SameSite=Strict, for /ui, and Secure when the request came over HTTPS', async () => {
    const plain = new CookieJar();
    await signIn(gw.url, plain, gw.adminToken);
    const cookie = plain.lastSetCookies.find((c) => c.startsWith('kasgate_session='))!;
    expect(cookie).toMatch(/; Path=\/ui; Expires=[^;]+; HttpOnly; SameSite=Strict$/);

    const https = new CookieJar();
    await signIn(gw.url, https, gw.adminToken, { 'x-forwarded-proto': 'https' });
    const secure = https.lastSetCookies.find((c) => c.startsWith('kasgate_session='))!;
    expect(secure).toMatch(/; HttpOnly; Secure; SameSite=Strict$/);
    // The cookie's value is a signed random id: nothing of the token in it.
    expect(secure).not.toContain(gw.adminToken);
  });

  test('a wrong token is refused with a message; past the limit an address gets 429, even with the right token', async () => {
    const from = { 'x-forwarded-for': '203.0.113.7' };
    const jar = new CookieJar();
    for (let i = 0; i < 3; i++) {
      const refused = await signIn(gw.url, jar, 'wrong-token', from);
      expect(refused.status).toBe(303);
      expect(refused.headers.get('location')).toBe('/ui/login?refused=1&next=%2Fui');
    }
    const page = await (await fetchWithJar(jar, `${gw.url}/ui/login?refused=1`, { headers: from })).text();
    expect(page).toContain('That is not the admin token.');

    const limited = await signIn(gw.url, jar, gw.adminToken, from);
    expect(limited.status).toBe(429);
    expect(Number(limited.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(await limited.text()).toMatch(/Too many failed sign-ins from your address\. Try again in \d+ s\./);
    expect(jar.get('kasgate_session')).toBeUndefined();

    // Another address is not held back by this one's failures.
    expect((await signIn(gw.url, new CookieJar(), gw.adminToken, { 'x-forwarded-for': '203.0.113.8' })).status).toBe(303);
  });

  test('sign-in and sign-out posts need the form token, and cross-site posts are refused', async () => {
    const noToken = await fetch(`${gw.url}/ui/login`, form({ token: gw.adminToken }));
    expect(noToken.status).toBe(403);
    expect(await noToken.text()).toContain('This form had expired');

    const jar = new CookieJar();
    const csrf = csrfOf(await (await fetchWithJar(jar, `${gw.url}/ui/login`)).text());
    const crossSite = await fetchWithJar(jar, `${gw.url}/ui/login`, {
      ...form({ token: gw.adminToken, _csrf: csrf }),
      headers: { 'content-type': 'application/x-www-form-urlencoded', 'sec-fetch-site': 'cross-site' },
    });
    expect(crossSite.status).toBe(403);
    expect(jar.get('kasgate_session')).toBeUndefined();

    const signed = await signedIn(gw.url, gw.adminToken);
    const logout = await fetchWithJar(signed, `${gw.url}/ui/logout`, form({ _csrf: 'forged' }));
    expect(logout.status).toBe(403);
    expect((await fetchWithJar(signed, `${gw.url}/ui`)).status).toBe(200);
  });

  test('pages are behind sign-in; sign-out ends the session on the server, not only in the browser', async () => {
    const anonymous = await fetch(`${gw.url}/ui/agents/00000000-0000-0000-0000-000000000000`, { redirect: 'manual' });
    expect(anonymous.status).toBe(303);
    expect(anonymous.headers.get('location')).toBe('/ui/login?next=%2Fui%2Fagents%2F00000000-0000-0000-0000-000000000000');
    expect((await fetch(`${gw.url}/ui/live?view=overview`, { headers: { accept: 'text/event-stream' } })).status).toBe(401);

    const jar = await signedIn(gw.url, gw.adminToken);
    const stolen = jar.header();
    const page = await (await fetchWithJar(jar, `${gw.url}/ui`)).text();
    const out = await fetchWithJar(jar, `${gw.url}/ui/logout`, form({ _csrf: csrfOf(page) }));
    expect(out.status).toBe(303);
    expect(out.headers.get('location')).toBe('/ui/login?signed_out=1');
    const replayed = await fetch(`${gw.url}/ui`, { headers: { cookie: stolen }, redirect: 'manual' });
    expect(replayed.status).toBe(303);
    expect(replayed.headers.get('location')).toMatch(/^\/ui\/login/);
  });

  test('an open live stream ends when its session signs out', async () => {
    const jar = await signedIn(gw.url, gw.adminToken);
    const stream = await openSse(`${gw.url}/ui/live?view=overview&new=1`, jar);
    await stream.waitFor((f) => f.event === 'ready');
    const page = await (await fetchWithJar(jar, `${gw.url}/ui`)).text();
    await fetchWithJar(jar, `${gw.url}/ui/logout`, form({ _csrf: csrfOf(page) }));
    const bye = await stream.waitFor((f) => f.event === 'signed-out');
    expect(JSON.parse(bye.data)).toEqual({ reason: 'signed_out' });
    await expect.poll(() => stream.ended).toBe(true);
  });

  test('the live feed sends new events as rows, escaped, and what a browser missed when it comes back', async () => {
    const jar = await signedIn(gw.url, gw.adminToken);
    const page = await (await fetchWithJar(jar, `${gw.url}/ui`)).text();
    const liveUrl = /data-live-url="([^"]+)"/.exec(page)![1]!.replaceAll('&amp;', '&');
    const from = new URL(liveUrl, gw.url).searchParams.get('from')!;
    const stream = await openSse(`${gw.url}${liveUrl}`, jar);
    await stream.waitFor((f) => f.event === 'ready');

    const path = `ui-live/<b>bold</b>-${nextProjectId()}`;
    const posted = await gw.postWebhook(pushBody({ path, projectId: nextProjectId() }));
    expect(posted.status).toBe(202);
    const { eventId } = (await posted.json()) as { eventId: string };
    const row = await stream.waitFor((f) => f.event === 'event-row' && JSON.parse(f.data).id === eventId);
    const html = JSON.parse(row.data).html as string;
    expect(html).toContain('ui-live/&lt;b&gt;bold&lt;/b&gt;');
    expect(html).not.toContain('<b>');
    stream.close();

    // Coming back with the position of the page: the event it missed is sent first.
    const back = await openSse(`${gw.url}/ui/live?view=overview&new=1`, jar, { 'last-event-id': from });
    await back.waitFor((f) => f.event === 'ready');
    expect(back.frames.filter((f) => f.event === 'event-row').map((f) => JSON.parse(f.data).id)).toContain(eventId);
    back.close();

    // From before this replica started, it cannot know what was missed: the page is told to reload.
    const old = await openSse(`${gw.url}/ui/live?view=overview&new=1&from=0-1000`, jar);
    await old.waitFor((f) => f.event === 'resync');
  });

  test('an event page hears of an agent that got the push later (a replay) without a reload; the overview is sent nothing for a delivery alone', async () => {
    const jar = await signedIn(gw.url, gw.adminToken);
    const projectId = nextProjectId();
    const path = `ui-live/replayed-${projectId}`;
    const registered = await gw.createAgent(`late-${projectId}`, path);
    const posted = await gw.postWebhook(pushBody({ path, projectId }));
    const { eventId } = (await posted.json()) as { eventId: string };

    const eventPage = await (await fetchWithJar(jar, `${gw.url}/ui/events/${eventId}`)).text();
    expect(eventPage).not.toContain(`late-${projectId}`);
    const liveUrl = /data-live-url="([^"]+)"/.exec(eventPage)![1]!.replaceAll('&amp;', '&');
    const eventStream = await openSse(`${gw.url}${liveUrl}`, jar);
    const overview = await openSse(`${gw.url}/ui/live?view=overview&new=1`, jar);
    await Promise.all([eventStream, overview].map((s) => s.waitFor((f) => f.event === 'ready')));

    const agent = await connectAgent(gw.wsUrl, registered.token);
    await agent.subscribe([path], String(BigInt(eventId) - 1n));
    await agent.waitFor((f) => f.type === 'push' && f.eventId === eventId);
    const live = await eventStream.waitFor((f) => f.event === 'event-live' && JSON.parse(f.data).html.includes(`late-${projectId}`));
    expect(JSON.parse(live.data).html).toContain('Delivered to 1 agent');
    await new Promise((r) => setTimeout(r, 300));
    expect(overview.frames.filter((f) => f.event === 'deployments' && JSON.parse(f.data).id === eventId)).toEqual([]);
    for (const s of [eventStream, overview]) s.close();
    await agent.close();
  });

  test('10,000 agents and 100,000 events: every page reads 50, paging and search work server-side', async () => {
    await queryInSchema(
      gw.schema,
      `INSERT INTO agents (name, config_project) SELECT 'bulk-' || lpad(i::text, 5, '0'), 'bulk/config' FROM generate_series(1, 10000) i`,
    );
    await queryInSchema(
      gw.schema,
      `INSERT INTO push_events (kind, project_id, project_path, ref, before_sha, after_sha, received_at)
       SELECT 'push', 900000 + i % 1000, 'bulk-group/project-' || (i % 1000), 'refs/heads/main', repeat('0', 40), md5(i::text) || '00000000', now()
       FROM generate_series(1, 100000) i`,
    );
    await queryInSchema(gw.schema, `INSERT INTO projects (id, path) SELECT 900000 + i, 'bulk-group/project-' || i FROM generate_series(0, 999) i`);
    const jar = await signedIn(gw.url, gw.adminToken);
    const first = await (await fetchWithJar(jar, `${gw.url}/ui?agent=bulk-`)).text();
    const agents = rowsOf(first, 'data-agent-id');
    expect(agents).toHaveLength(50);
    expect(first).toContain('10000 agents match');
    expect(first).toContain('>bulk-00001</a>');
    expect(first).toContain('>bulk-00050</a>');

    const next = /href="([^"]+)" rel="next">Next agents/.exec(first)![1]!.replaceAll('&amp;', '&');
    expect(next).toBe('/ui?agent=bulk-&agents_after=bulk-00050');
    const second = await (await fetchWithJar(jar, `${gw.url}${next}`)).text();
    expect(second).toContain('>bulk-00051</a>');
    expect(second).toContain('>bulk-00100</a>');
    const previous = /href="([^"]+)" rel="prev">← Previous agents/.exec(second)![1]!.replaceAll('&amp;', '&');
    const back = await (await fetchWithJar(jar, `${gw.url}${previous}`)).text();
    expect(rowsOf(back, 'data-agent-id')).toEqual(agents);

    const one = await (await fetchWithJar(jar, `${gw.url}/ui?agent=BULK-09999`)).text();
    expect(rowsOf(one, 'data-agent-id')).toHaveLength(1);
    expect(one).toContain('1 agent match');

    const events = await (await fetchWithJar(jar, `${gw.url}/ui?project=bulk-group/project-7`)).text();
    const ids = rowsOf(events, 'data-event-id');
    expect(ids).toHaveLength(50);
    expect(ids.map(Number)).toEqual(ids.map(Number).toSorted((a, b) => b - a));
    expect(events.match(/bulk-group\/project-7\d*</g)).toHaveLength(50);
    const older = /href="([^"]+)" rel="next">Older events/.exec(events)![1]!.replaceAll('&amp;', '&');
    const olderPage = rowsOf(await (await fetchWithJar(jar, `${gw.url}${older}`)).text(), 'data-event-id');
    expect(Number(olderPage[0])).toBeLessThan(Number(ids.at(-1)));

    // One project matches: its own events, through the path index, page after page.
    const few = await (await fetchWithJar(jar, `${gw.url}/ui?project=Project-777`)).text();
    const fewIds = rowsOf(few, 'data-event-id');
    expect(fewIds).toHaveLength(50);
    expect(few.match(/bulk-group\/project-777</g)).toHaveLength(50);
    const rest = /href="([^"]+)" rel="next">Older events/.exec(few)![1]!.replaceAll('&amp;', '&');
    const restPage = await (await fetchWithJar(jar, `${gw.url}${rest}`)).text();
    expect(rowsOf(restPage, 'data-event-id')).toHaveLength(50);
    expect(restPage).not.toContain('rel="next">Older events');
    expect(new Set([...fewIds, ...rowsOf(restPage, 'data-event-id')]).size).toBe(100);

    const nothing = await (await fetchWithJar(jar, `${gw.url}/ui?project=no-such-project-anywhere`)).text();
    expect(nothing).toContain('No event matches this search.');
  });

  test('bad addresses get a page that says what is wrong, never a stack trace', async () => {
    const jar = await signedIn(gw.url, gw.adminToken);
    const missingAgent = await fetchWithJar(jar, `${gw.url}/ui/agents/not-a-uuid`);
    expect(missingAgent.status).toBe(404);
    expect(await missingAgent.text()).toContain('There is no agent with this id');
    const missingEvent = await fetchWithJar(jar, `${gw.url}/ui/events/99999999999999999999`);
    expect(missingEvent.status).toBe(404);
    const badCursor = await fetchWithJar(jar, `${gw.url}/ui?events_before=abc`);
    expect(badCursor.status).toBe(400);
    expect(await badCursor.text()).toContain('must be an event id');
    expect((await fetchWithJar(jar, `${gw.url}/ui/nothing-here`)).status).toBe(404);
  });

  test('the UI routes are not in the OpenAPI document', async () => {
    const doc = (await (await fetch(`${gw.url}/openapi.json`)).json()) as { paths: Record<string, unknown> };
    expect(Object.keys(doc.paths).filter((p) => p.startsWith('/ui'))).toEqual([]);
  });
});

describe('cluster state, once it is wired in', () => {
  const gw = useGateway();

  test('deployment columns, the Flux objects table and live deployment changes appear', async () => {
    const project = `ui-cluster/app-${nextProjectId()}`;
    const agent = await gw.createAgent('cluster-agent', project);
    const posted = await gw.postWebhook(pushBody({ path: project, projectId: nextProjectId() }));
    const { eventId } = (await posted.json()) as { eventId: string };
    let state: 'pending' | 'applied' = 'pending';
    const deployment = () => ({
      agent: { id: agent.id, name: 'cluster-agent' },
      object: { kind: 'Kustomization', namespace: 'flux-system', name: 'apps' },
      state,
      revision: 'main@sha1:abc',
      at: new Date().toISOString(),
      latencyMs: state === 'applied' ? 4200 : null,
      timeline: [{ state: 'pending' as const, at: new Date().toISOString() }],
    });
    const deliveries = () => [{ agent: { id: agent.id, name: 'cluster-agent' }, at: new Date().toISOString() }];
    const cluster: ClusterView = {
      objectsOf: async () => ({
        objects: [{ kind: 'GitRepository', namespace: 'flux-system', name: 'app', ready: 'False', reason: 'AuthFailed', message: 'bad <creds>', revision: null }],
        truncated: false,
      }),
      deliveriesOf: async () => deliveries(),
      deploymentsOf: async (ids) => new Map(ids.filter((id) => id === eventId).map((id) => [id, [deployment()]])),
      eventDeployments: async (id) => ({ deployments: id === eventId ? [deployment()] : [], deliveries: deliveries() }),
    };
    gw.ctx.clusterView = cluster;

    const jar = await signedIn(gw.url, gw.adminToken);
    const overview = await (await fetchWithJar(jar, `${gw.url}/ui`)).text();
    expect(overview).toContain('<th scope="col">Deployments</th>');
    expect(overview).toContain('1 pending');

    const agentPage = await (await fetchWithJar(jar, `${gw.url}/ui/agents/${agent.id}`)).text();
    expect(agentPage).toContain('Flux objects');
    expect(agentPage).toContain('not Ready');
    expect(agentPage).toContain('bad &lt;creds&gt;');

    const eventPage = await (await fetchWithJar(jar, `${gw.url}/ui/events/${eventId}`)).text();
    expect(eventPage).toContain('Delivered to 1 agent');
    expect(eventPage).toContain('Kustomization flux-system/apps');

    const stream = await openSse(`${gw.url}/ui/live?view=overview&new=1`, jar);
    await stream.waitFor((f) => f.event === 'ready');
    state = 'applied';
    gw.ctx.live.deploymentsChanged([eventId]);
    const update = JSON.parse((await stream.waitFor((f) => f.event === 'deployments')).data);
    expect(update.id).toBe(eventId);
    expect(update.deployments).toContain('1 applied');
    expect(update.latency).toBe('4.2 s');
    stream.close();
  });
});

describe('two replicas', () => {
  const [a, b] = useReplicaPair();

  test('a session made on one replica works on the other; connection changes reach the other live', async () => {
    const jar = await signedIn(a.url, a.adminToken);
    expect((await fetchWithJar(jar, `${b.url}/ui`)).status).toBe(200);

    const project = `ui-pairs/app-${nextProjectId()}`;
    const registered = await a.createAgent('pairs-agent', project);
    const stream = await openSse(`${b.url}/ui/live?view=agent&id=${registered.id}`, jar);
    await stream.waitFor((f) => f.event === 'ready');
    const agent = await connectAgent(a.wsUrl, registered.token);
    const live = await stream.waitFor((f) => f.event === 'agent-live');
    expect(JSON.parse(live.data).html).toContain(a.ctx.config.replicaId);
    await agent.close();
    stream.close();
  });
});

describe('sessions expire', () => {
  const gw = useGateway({ noRedis: true, env: { KASGATE_UI_SESSION_TTL: '1s' } });

  test('in process (no Redis), a session ends by itself after KASGATE_UI_SESSION_TTL', async () => {
    const jar = await signedIn(gw.url, gw.adminToken);
    expect((await fetchWithJar(jar, `${gw.url}/ui`)).status).toBe(200);
    await new Promise((resolve) => setTimeout(resolve, 1100));
    const after = await fetchWithJar(jar, `${gw.url}/ui`);
    expect(after.status).toBe(303);
    expect(after.headers.get('location')).toMatch(/^\/ui\/login\?next=%2Fui/);
  });
});
