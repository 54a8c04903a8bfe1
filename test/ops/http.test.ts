import { readFile } from 'node:fs/promises';
import { expect, test } from 'vitest';
import { useGateway } from '../support/gateway.js';

const gw = useGateway();

test('/healthz and /readyz answer with Postgres and Redis reachable', async () => {
  expect(await (await fetch(`${gw.url}/healthz`)).json()).toEqual({ status: 'ok' });
  const ready = await fetch(`${gw.url}/readyz`);
  expect(ready.status).toBe(200);
  expect(await ready.json()).toEqual({ status: 'ready', checks: { postgres: 'ok', redis: 'ok' } });
});

test('/metrics exposes process metrics and HTTP duration histograms by route', async () => {
  await fetch(`${gw.url}/healthz`);
  const res = await fetch(`${gw.url}/metrics`);
  expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
  const text = await res.text();
  expect(text).toContain('process_resident_memory_bytes');
  expect(text).toMatch(/kasgate_http_request_duration_seconds_bucket\{.*route="\/healthz".*\} \d+/);
});

test('/metrics needs no authentication, and so shows no agent name, project path or token', async () => {
  const { id, token } = await gw.createAgent('metrics-secretive-agent', 'hidden-group/hidden-project');
  await gw.admin('PUT', `/agents/${id}/grants`, { projects: ['hidden-group/granted'], groups: [] });
  await gw.admin('GET', `/agents/${id}/tokens`);
  const res = await fetch(`${gw.url}/metrics`);
  expect(res.status).toBe(200);
  const text = await res.text();
  for (const secret of ['metrics-secretive-agent', 'hidden-group', id, token, gw.adminToken, gw.webhookSecret]) {
    expect(text).not.toContain(secret);
  }
});

test('the served OpenAPI document is the committed one (run `npm run openapi` after changing a route)', async () => {
  const served = (await (await fetch(`${gw.url}/openapi.json`)).json()) as { paths: object };
  const committed = JSON.parse(await readFile(new URL('../../openapi/openapi.json', import.meta.url), 'utf8'));
  expect(served).toEqual(committed);
  expect(Object.keys(served.paths)).toEqual(expect.arrayContaining(['/webhooks/gitlab', '/api/v1/agents', '/api/v1/events']));
});

test('/docs renders the API reference', async () => {
  const res = await fetch(`${gw.url}/docs/`);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/text\/html/);
});

test('the frame reference the OpenAPI document links to is served, and is docs/protocol.md', async () => {
  const served = (await (await fetch(`${gw.url}/openapi.json`)).json()) as { paths: Record<string, { get: { externalDocs: { url: string } } }> };
  const link = served.paths['/agent/v1/connect']!.get.externalDocs.url;
  const res = await fetch(new URL(link, gw.url));
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^text\/markdown/);
  expect(await res.text()).toBe(await readFile(new URL('../../docs/protocol.md', import.meta.url), 'utf8'));
});
