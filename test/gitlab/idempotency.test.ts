/**
 * Idempotency: Idempotency-Key, else the Standard Webhooks webhook-id, never X-Gitlab-Event-UUID
 * (GitLab's recursion-detection id, shared by every hook of one webhook-triggered chain), never the content. A redelivery gets
 * the first answer and no second event, even when the copies arrive at once.
 */
import { describe, expect, test } from 'vitest';
import { connectAgent } from '../support/agent-client.js';
import { useGateway, useReplicaPair } from '../support/gateway.js';
import { nextProjectId, pushBody } from '../support/fixtures.js';
import { MODES, newKey, readJson } from './support/webhooks.js';

interface Accepted {
  status: 'accepted';
  eventId: string;
  eventIds: string[];
  duplicate: boolean;
}

describe.each(MODES)('idempotency on $mode', ({ options }) => {
  const gw = useGateway(options);

  async function deliver(body: object, headers: Record<string, string>): Promise<Accepted> {
    const res = await gw.postWebhook(body, headers);
    expect(res.status).toBe(202);
    return (await readJson(res)) as Accepted;
  }

  async function eventIds(projectId: number): Promise<string[]> {
    const { body } = await gw.admin('GET', `/events?project=${projectId}&limit=1000`);
    return (body.events as { id: string }[]).map((e) => e.id);
  }

  test('a redelivery with the same Idempotency-Key: the first eventId, duplicate, no second event', async () => {
    const id = nextProjectId();
    const key = newKey();
    const first = await deliver(pushBody({ projectId: id }), { 'idempotency-key': key });
    const second = await deliver(pushBody({ projectId: id }), { 'idempotency-key': key });
    expect(first.duplicate).toBe(false);
    expect(second).toEqual({ status: 'accepted', eventId: first.eventId, eventIds: [first.eventId], duplicate: true });
    expect(await eventIds(id)).toEqual([first.eventId]);
  });

  test('X-Gitlab-Event-UUID is no key: two different pushes sharing it are both stored and both reach the agent', async () => {
    const id = nextProjectId();
    const path = `chain/bot-${id}`;
    const agent = await gw.createAgent(`bot-${id}`, path);
    const client = await connectAgent(gw.wsUrl, agent.token);
    await client.subscribe([path]);
    // A bot answering a webhook with two pushes: GitLab gives every hook of that chain one UUID.
    const uuid = newKey();
    const first = await deliver(pushBody({ projectId: id, path, after: 'a'.repeat(40) }), { 'x-gitlab-event-uuid': uuid });
    const second = await deliver(pushBody({ projectId: id, path, after: 'b'.repeat(40) }), { 'x-gitlab-event-uuid': uuid });
    expect([first.duplicate, second.duplicate]).toEqual([false, false]);
    expect(await eventIds(id)).toEqual([first.eventId, second.eventId]);
    await client.waitFor(() => client.pushes().length === 2);
    expect(client.pushes().map((p) => [p.eventId, p.after])).toEqual([
      [first.eventId, 'a'.repeat(40)],
      [second.eventId, 'b'.repeat(40)],
    ]);
    await client.close();
  });

  test('without Idempotency-Key, the Standard Webhooks webhook-id is the key', async () => {
    const id = nextProjectId();
    const webhookId = `msg_${newKey()}`;
    const first = await deliver(pushBody({ projectId: id }), { 'webhook-id': webhookId });
    const second = await deliver(pushBody({ projectId: id }), { 'webhook-id': webhookId, 'x-gitlab-event-uuid': newKey() });
    expect(second).toEqual({ status: 'accepted', eventId: first.eventId, eventIds: [first.eventId], duplicate: true });
    expect(await eventIds(id)).toEqual([first.eventId]);
  });

  test('Idempotency-Key wins over X-Gitlab-Event-UUID (GitLab keeps the key across manual resends)', async () => {
    const id = nextProjectId();
    const key = newKey();
    const first = await deliver(pushBody({ projectId: id }), { 'idempotency-key': key, 'x-gitlab-event-uuid': newKey() });
    const resend = await deliver(pushBody({ projectId: id }), { 'idempotency-key': key, 'x-gitlab-event-uuid': newKey() });
    expect(resend).toEqual({ status: 'accepted', eventId: first.eventId, eventIds: [first.eventId], duplicate: true });
  });

  test('the same body under two different keys gives two events', async () => {
    const id = nextProjectId();
    const body = pushBody({ projectId: id });
    const a = await deliver(body, { 'idempotency-key': newKey() });
    const b = await deliver(body, { 'idempotency-key': newKey() });
    expect(a.duplicate || b.duplicate).toBe(false);
    expect(b.eventId).not.toBe(a.eventId);
    expect(await eventIds(id)).toEqual([a.eventId, b.eventId]);
  });

  test('with no key at all there is no dedup: the same body twice gives two events', async () => {
    const id = nextProjectId();
    const body = pushBody({ projectId: id });
    const a = await deliver(body, {});
    const b = await deliver(body, {});
    expect([a.duplicate, b.duplicate]).toEqual([false, false]);
    expect(await eventIds(id)).toEqual([a.eventId, b.eventId]);
  });

  test('20 copies of one delivery at once: one event, every answer with its id, exactly one not duplicate', async () => {
    const id = nextProjectId();
    const key = newKey();
    const answers = await Promise.all(Array.from({ length: 20 }, () => deliver(pushBody({ projectId: id }), { 'idempotency-key': key })));
    const ids = new Set(answers.map((a) => a.eventId));
    expect(ids.size).toBe(1);
    expect(answers.filter((a) => !a.duplicate)).toHaveLength(1);
    expect(await eventIds(id)).toEqual([...ids]);
  });

  test('20 copies each of 5 deliveries at once, interleaved: 5 events', async () => {
    const id = nextProjectId();
    const keys = Array.from({ length: 5 }, () => newKey());
    const answers = await Promise.all(
      Array.from({ length: 100 }, (_, i) => deliver(pushBody({ projectId: id }), { 'idempotency-key': keys[i % 5]! })),
    );
    const idByKey = new Map<string, Set<string>>();
    answers.forEach((a, i) => idByKey.set(keys[i % 5]!, (idByKey.get(keys[i % 5]!) ?? new Set()).add(a.eventId)));
    expect([...idByKey.values()].map((s) => s.size)).toEqual([1, 1, 1, 1, 1]);
    expect((await eventIds(id)).sort()).toEqual([...idByKey.values()].map((s) => [...s][0]!).sort());
  });

  test('an empty or over-long key is refused with 400 naming the header', async () => {
    for (const [header, value] of [
      ['idempotency-key', ''],
      ['idempotency-key', 'k'.repeat(256)],
      ['webhook-id', ''],
      ['webhook-id', 'w'.repeat(256)],
    ] as const) {
      const res = await gw.postWebhook(pushBody({ projectId: nextProjectId() }), { [header]: value });
      const { error } = await readJson(res);
      expect({ header, status: res.status, code: error.code, namesHeader: error.message.toLowerCase().includes(header) }).toEqual({
        header,
        status: 400,
        code: 'invalid_idempotency_key',
        namesHeader: true,
      });
    }
  });
});

describe('idempotency across replicas (Postgres)', () => {
  const [first, second] = useReplicaPair();

  test('copies of one delivery spread over two replicas at once: one event', async () => {
    const id = nextProjectId();
    const key = newKey();
    const answers = await Promise.all(
      Array.from({ length: 20 }, async (_, i) => {
        const res = await (i % 2 ? second : first).postWebhook(pushBody({ projectId: id }), { 'idempotency-key': key });
        expect(res.status).toBe(202);
        return (await readJson(res)) as Accepted;
      }),
    );
    expect(new Set(answers.map((a) => a.eventId)).size).toBe(1);
    expect(answers.filter((a) => !a.duplicate)).toHaveLength(1);
    const { body } = await first.admin('GET', `/events?project=${id}`);
    expect(body.events).toHaveLength(1);
  });
});
