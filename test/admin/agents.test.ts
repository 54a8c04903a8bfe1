import { createHash } from 'node:crypto';
import { describe, expect, test } from 'vitest';
import { useGateway } from '../support/gateway.js';
import { connectAgent, eventually } from '../support/agent-client.js';
import { queryInSchema } from '../support/isolation.js';

const gw = useGateway();

const MISSING = '00000000-0000-4000-8000-000000000000';

describe('admin authentication', () => {
  test.each([
    ['no header', undefined],
    ['a wrong token', 'Bearer not-the-admin-token'],
    ['the right token without Bearer', 'ADMIN'],
  ])('%s gets 401 with the error body', async (_label, header) => {
    const authorization = header === 'ADMIN' ? gw.adminToken : header;
    const res = await fetch(`${gw.url}/api/v1/agents`, { headers: authorization ? { authorization } : {} });
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toMatch(/^Bearer/);
    expect(await res.json()).toEqual({ error: { code: 'unauthorized', message: expect.any(String) } });
  });

  test('an unknown route gets 404 with the error body', async () => {
    const res = await fetch(`${gw.url}/nope`);
    expect(res.status).toBe(404);
    expect(await res.json()).toMatchObject({ error: { code: 'not_found' } });
  });
});

describe('agents', () => {
  test('registering returns the agent and a token shown once, stored only as a hash', async () => {
    const { status, body } = await gw.admin('POST', '/agents', {
      name: 'cluster-a',
      configProject: 'Infra/Cluster-A',
      config: { flux: { webhookReceiverUrl: 'http://receiver.example' } },
    });
    expect(status).toBe(201);
    expect(body.agent).toMatchObject({ name: 'cluster-a', configProject: 'Infra/Cluster-A' });
    const token: string = body.token.token;
    expect(token).toMatch(/^kgagent_[A-Za-z0-9_-]{43}$/); // 32 random bytes, base64url
    expect(token.startsWith(body.token.prefix)).toBe(true);

    const rows = await queryInSchema<{ row: string; token_hash: Buffer }>(
      gw.schema,
      'SELECT t::text AS row, token_hash FROM agent_tokens t WHERE agent_id = $1',
      [body.agent.id],
    );
    expect(rows).toHaveLength(1);
    expect(rows[0]!.token_hash.equals(createHash('sha256').update(token).digest())).toBe(true);
    const secretPart = token.slice('kgagent_'.length);
    expect(rows[0]!.row).not.toContain(secretPart);

    const listed = await gw.admin('GET', `/agents/${body.agent.id}/tokens`);
    expect(JSON.stringify(listed.body)).not.toContain(secretPart);
  });

  test('a duplicate name gets 409', async () => {
    await gw.createAgent('dup', 'g/p');
    const { status, body } = await gw.admin('POST', '/agents', { name: 'dup', configProject: 'g/q' });
    expect(status).toBe(409);
    expect(body).toEqual({ error: { code: 'agent_exists', message: expect.stringContaining('dup') } });
  });

  test.each([
    [{ configProject: 'g/p' }, 'body.name'],
    [{ name: 'Bad Name', configProject: 'g/p' }, 'body.name'],
    [{ name: 'ok' }, 'body.configProject'],
    [{ name: 'ok', configProject: '/leading/slash' }, 'body.configProject'],
    [{ name: 'ok', configProject: 'g/p', config: 'not-an-object' }, 'body.config'],
  ])('a bad body %j gets 400 naming %s', async (payload, field) => {
    const { status, body } = await gw.admin('POST', '/agents', payload);
    expect(status).toBe(400);
    expect(body.error.code).toBe('invalid_request');
    expect(body.error.message).toContain(field);
  });

  test('a body that is not JSON gets 400, not 500', async () => {
    const res = await fetch(`${gw.url}/api/v1/agents`, {
      method: 'POST',
      headers: { authorization: `Bearer ${gw.adminToken}`, 'content-type': 'application/json' },
      body: '{"name":',
    });
    expect(res.status).toBe(400);
    expect(((await res.json()) as any).error.code).toBeTypeOf('string');
  });

  test('get, patch and delete; unknown and malformed ids are 404', async () => {
    const { id } = await gw.createAgent('crud', 'g/crud');
    expect((await gw.admin('GET', `/agents/${id}`)).body).toMatchObject({ id, name: 'crud', config: {} });

    const patched = await gw.admin('PATCH', `/agents/${id}`, { config: { flux: { webhookReceiverUrl: 'http://x' } } });
    expect(patched.status).toBe(200);
    expect(patched.body.config).toEqual({ flux: { webhookReceiverUrl: 'http://x' } });
    expect((await gw.admin('GET', `/agents/${id}`)).body.config).toEqual({ flux: { webhookReceiverUrl: 'http://x' } });

    for (const bad of [MISSING, 'not-a-uuid']) {
      for (const [method, body] of [['GET'], ['PATCH', { config: {} }], ['DELETE']] as const) {
        const res = await gw.admin(method, `/agents/${bad}`, body);
        expect(res.status, `${method} ${bad}`).toBe(404);
        expect(res.body.error.code).toBe('not_found');
      }
    }

    expect((await gw.admin('DELETE', `/agents/${id}`)).status).toBe(204);
    expect((await gw.admin('GET', `/agents/${id}`)).status).toBe(404);
    expect((await gw.admin('DELETE', `/agents/${id}`)).status).toBe(404);
  });

  test('the list pages by cursor through every agent exactly once', async () => {
    const names = ['page-a', 'page-b', 'page-c', 'page-d', 'page-e'];
    for (const name of names) await gw.createAgent(name, `pages/${name}`);
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const query: string = cursor ? `?limit=2&cursor=${cursor}` : '?limit=2';
      const { status, body } = await gw.admin('GET', `/agents${query}`);
      expect(status).toBe(200);
      expect(body.agents.length).toBeLessThanOrEqual(2);
      seen.push(...body.agents.map((a: { name: string }) => a.name));
      cursor = body.nextCursor;
      pages++;
    } while (cursor && pages < 50);
    expect(seen.filter((n) => names.includes(n))).toEqual(names);
    expect(new Set(seen).size).toBe(seen.length);
    expect(seen).toEqual([...seen].sort());
  });

  test('limit out of range gets 400 naming it', async () => {
    const { status, body } = await gw.admin('GET', '/agents?limit=0');
    expect(status).toBe(400);
    expect(body.error.message).toContain('querystring.limit');
  });

  test('the agent receives its stored config in hello, and a deleted agent cannot connect', async () => {
    const { id, token } = await gw.createAgent('hello', 'g/hello', { flux: { webhookReceiverUrl: 'http://r' } });
    const agent = await connectAgent(gw.wsUrl, token);
    expect(agent.frames[0]).toMatchObject({
      type: 'hello',
      agentId: id,
      config: { flux: { webhookReceiverUrl: 'http://r' } },
      limits: { maxFrameBytes: 65_536, maxStatusObjects: 5000 },
    });
    await agent.close();
    await gw.admin('DELETE', `/agents/${id}`);
    await expect(connectAgent(gw.wsUrl, token)).rejects.toMatchObject({ status: 401 });
  });
});

describe('tokens', () => {
  test('issue, list (never the secret), revoke; a revoked token is refused, the other still works', async () => {
    const { id, token: first } = await gw.createAgent('rotating', 'g/rot');
    const issued = await gw.admin('POST', `/agents/${id}/tokens`);
    expect(issued.status).toBe(201);
    const second: string = issued.body.token;
    expect(second).toMatch(/^kgagent_/);
    expect(second).not.toBe(first);

    const list = await gw.admin('GET', `/agents/${id}/tokens`);
    expect(list.body.tokens).toHaveLength(2);
    for (const t of list.body.tokens) {
      expect(t).not.toHaveProperty('token');
      expect(t.revokedAt).toBeNull();
    }

    const firstId = list.body.tokens.find((t: { prefix: string }) => first.startsWith(t.prefix)).id;
    const revoked = await gw.admin('DELETE', `/agents/${id}/tokens/${firstId}`);
    expect(revoked.status).toBe(200);
    expect(revoked.body.revokedAt).toEqual(expect.any(String));

    await expect(connectAgent(gw.wsUrl, first)).rejects.toMatchObject({ status: 401 });
    const agent = await connectAgent(gw.wsUrl, second);
    await agent.close();
    const lastUsed = () =>
      gw.admin('GET', `/agents/${id}/tokens`).then((r) => r.body.tokens.find((t: { id: string }) => t.id === issued.body.id).lastUsedAt);
    expect(await eventually(lastUsed, (at) => typeof at === 'string')).toEqual(expect.any(String));
  });

  test('unknown agent or token ids are 404', async () => {
    const { id } = await gw.createAgent('tok-404', 'g/t');
    expect((await gw.admin('POST', `/agents/${MISSING}/tokens`)).status).toBe(404);
    expect((await gw.admin('GET', `/agents/${MISSING}/tokens`)).status).toBe(404);
    expect((await gw.admin('DELETE', `/agents/${id}/tokens/${MISSING}`)).status).toBe(404);
    expect((await gw.admin('DELETE', `/agents/${id}/tokens/garbage`)).status).toBe(404);
  });
});

describe('grants', () => {
  test('PUT replaces, GET returns them', async () => {
    const { id } = await gw.createAgent('granted', 'g/own');
    expect((await gw.admin('GET', `/agents/${id}/grants`)).body).toEqual({ projects: [], groups: [] });
    const put = await gw.admin('PUT', `/agents/${id}/grants`, { projects: ['a/b', 'c/d'], groups: ['team'] });
    expect(put.status).toBe(200);
    expect(put.body).toEqual({ projects: ['a/b', 'c/d'], groups: ['team'] });
    await gw.admin('PUT', `/agents/${id}/grants`, { groups: ['other'] });
    expect((await gw.admin('GET', `/agents/${id}/grants`)).body).toEqual({ projects: [], groups: ['other'] });
  });

  test('bad paths get 400 naming the field; unknown agents 404', async () => {
    const { id } = await gw.createAgent('grant-400', 'g/own');
    const bad = await gw.admin('PUT', `/agents/${id}/grants`, { projects: ['ok/path', 'bad path'] });
    expect(bad.status).toBe(400);
    expect(bad.body.error.message).toContain('body.projects.1');
    expect((await gw.admin('PUT', `/agents/${MISSING}/grants`, { projects: [] })).status).toBe(404);
    expect((await gw.admin('GET', `/agents/${MISSING}/grants`)).status).toBe(404);
  });
});
