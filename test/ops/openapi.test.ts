/**
 * The committed OpenAPI document (the one /openapi.json serves: test/ops/http.test.ts) explains
 * itself: every response says what it means, and the routes that parse their own bodies document
 * their headers and bodies all the same.
 */
import { readFile } from 'node:fs/promises';
import { expect, test } from 'vitest';

interface Operation {
  parameters?: { in: string; name: string; description?: string }[];
  requestBody?: { content: Record<string, unknown> };
  responses: Record<string, { description?: string }>;
  security?: Record<string, string[]>[];
  description?: string;
  externalDocs?: { url: string };
}
interface Document {
  paths: Record<string, Record<string, Operation>>;
  components: { securitySchemes: Record<string, { type: string; in?: string; name?: string; scheme?: string }> };
}

const doc = JSON.parse(await readFile(new URL('../../openapi/openapi.json', import.meta.url), 'utf8')) as Document;
const operations = Object.entries(doc.paths).flatMap(([path, methods]) =>
  Object.entries(methods).map(([method, op]) => ({ where: `${method.toUpperCase()} ${path}`, op })),
);

test('every response of every operation has a description of its own (no "Default Response")', () => {
  expect(operations.length).toBeGreaterThan(15);
  const undescribed = operations.flatMap(({ where, op }) =>
    Object.entries(op.responses).flatMap(([status, response]) =>
      !response.description?.trim() || response.description === 'Default Response' ? [`${where} ${status}`] : [],
    ),
  );
  expect(undescribed).toEqual([]);
  expect(JSON.stringify(doc)).not.toContain('Default Response');
});

const headerNames = (op: Operation) => (op.parameters ?? []).filter((p) => p.in === 'header').map((p) => p.name);

test('the GitLab webhook documents its headers, its secrets and its body', () => {
  const op = doc.paths['/webhooks/gitlab']!.post!;
  expect(headerNames(op)).toEqual(
    expect.arrayContaining(['X-Gitlab-Event', 'Idempotency-Key', 'webhook-id', 'webhook-timestamp', 'webhook-signature', 'X-Gitlab-Event-UUID']),
  );
  expect(op.parameters!.filter((p) => !p.description?.trim()).map((p) => p.name)).toEqual([]);
  // X-Gitlab-Token is a security scheme (the token, or no token and a signature).
  expect(op.security).toEqual([{ gitlabToken: [] }, {}]);
  expect(doc.components.securitySchemes.gitlabToken).toMatchObject({ type: 'apiKey', in: 'header', name: 'X-Gitlab-Token' });
  expect(Object.keys(op.requestBody!.content)).toEqual(['application/json']);
  expect(JSON.stringify(op.requestBody)).toMatch(/GitLabPushHook.*GitLabRepositoryUpdate.*GitLabPipelineHook/);
});

test('the registry route documents its Authorization secret and its envelope', () => {
  const op = doc.paths['/webhooks/registry']!.post!;
  expect(op.security).toEqual([{ registrySecret: [] }]);
  expect(doc.components.securitySchemes.registrySecret).toMatchObject({ type: 'apiKey', in: 'header', name: 'Authorization' });
  expect(Object.keys(op.requestBody!.content)).toEqual(
    expect.arrayContaining(['application/vnd.docker.distribution.events.v1+json', 'application/vnd.docker.distribution.events.v2+json']),
  );
});

test('the agent WebSocket is described: the upgrade, the subprotocol, the token, close codes, and the frame reference', () => {
  const op = doc.paths['/agent/v1/connect']!.get!;
  expect(headerNames(op)).toEqual(expect.arrayContaining(['Upgrade', 'Sec-WebSocket-Protocol']));
  expect(op.security).toEqual([{ agentToken: [] }]);
  expect(doc.components.securitySchemes.agentToken).toMatchObject({ type: 'http', scheme: 'bearer' });
  expect(Object.keys(op.responses)).toEqual(expect.arrayContaining(['101', '400', '401', '429', '503']));
  expect(op.description).toContain('`kasgate.v1`');
  for (const code of ['1012', '4400', '4401', '4408', '4429']) expect(op.description).toContain(`\`${code}\``);
  expect(op.externalDocs?.url).toBe('/agent/v1/protocol.md');
});
