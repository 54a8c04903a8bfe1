/**
 * Group commit, seen from outside: many concurrent webhooks are all stored, each with its own
 * id, and they reach Postgres in batches (fewer round trips than webhooks). No speed asserted.
 */
import { describe, expect, test } from 'vitest';
import { useGateway } from '../support/gateway.js';
import { nextProjectId, pushBody } from '../support/fixtures.js';
import { MODES, newKey, readJson } from '../gitlab/support/webhooks.js';
import { createGroupCommit } from '../../src/events/group-commit.js';

const CONCURRENT = 200;

describe.each(MODES)('group commit on $mode', ({ options }) => {
  const gw = useGateway(options);

  async function batchSizes(): Promise<{ batches: number; events: number; singles: number }> {
    const text = await (await fetch(`${gw.url}/metrics`)).text();
    const value = (pattern: RegExp) => Number(pattern.exec(text)?.[1] ?? 0);
    return {
      batches: value(/^kasgate_event_append_batch_size_count (\S+)$/m),
      events: value(/^kasgate_event_append_batch_size_sum (\S+)$/m),
      singles: value(/^kasgate_event_append_batch_size_bucket\{le="1"\} (\S+)$/m),
    };
  }

  test(`${CONCURRENT} webhooks at once: all stored, distinct increasing ids, written in batches`, async () => {
    const id = nextProjectId();
    const before = await batchSizes();

    const answers = await Promise.all(
      Array.from({ length: CONCURRENT }, async (_, i) => {
        const res = await gw.postWebhook(pushBody({ projectId: id, ref: `refs/heads/b${i}` }), { 'idempotency-key': newKey() });
        expect(res.status).toBe(202);
        return (await readJson(res)) as { eventId: string; duplicate: boolean };
      }),
    );
    expect(answers.every((a) => !a.duplicate)).toBe(true);
    const answered = answers.map((a) => a.eventId);
    expect(new Set(answered).size).toBe(CONCURRENT);

    const { body } = await gw.admin('GET', `/events?project=${id}&limit=1000`);
    const logged = (body.events as { id: string; ref: string }[]).map((e) => e.id);
    expect(logged).toHaveLength(CONCURRENT);
    const numeric = logged.map(BigInt);
    expect(numeric.every((n, i) => i === 0 || n > numeric[i - 1]!)).toBe(true);
    expect([...answered].sort()).toEqual([...logged].sort());
    // Each answer names the event of its own delivery.
    const refById = new Map((body.events as { id: string; ref: string }[]).map((e) => [e.id, e.ref]));
    expect(answered.map((eventId) => refById.get(eventId))).toEqual(answers.map((_, i) => `refs/heads/b${i}`));

    const after = await batchSizes();
    const batches = after.batches - before.batches;
    expect(after.events - before.events).toBe(CONCURRENT);
    expect(batches).toBeLessThan(CONCURRENT);
    // At least one statement carried more than one event.
    expect(batches - (after.singles - before.singles)).toBeGreaterThan(0);
  });
});

describe('group commit, one write in flight', () => {
  test('the next batch goes to the store before the last one is answered; doorbells ring in batch order', async () => {
    const log: string[] = [];
    let releaseFirst!: () => void;
    let writes = 0;
    const commit = createGroupCommit<string, string>(async (items) => {
      log.push(`write ${items.join(',')}`);
      if (++writes === 1) await new Promise<void>((resolve) => (releaseFirst = resolve));
      else await new Promise((resolve) => setTimeout(resolve, 5));
      return {
        outcomes: items.map((value) => ({ status: 'fulfilled' as const, value })),
        afterCommit: () => log.push(`rang ${items.join(',')}`),
      };
    }, 10);
    const a = commit.submit('a');
    const b = commit.submit('b');
    const c = commit.submit('c');
    const answers = [a, b, c].map((s) => s.result.then((v) => log.push(`answered ${v}`)));
    releaseFirst();
    await Promise.all(answers);
    expect(log).toEqual(['write a', 'write b,c', 'rang a', 'answered a', 'rang b,c', 'answered b', 'answered c']);
  });

  test('a failed write fails its own items only; the next batch is still written', async () => {
    let writes = 0;
    const commit = createGroupCommit<string, string>(async (items) => {
      if (++writes === 1) {
        await new Promise((resolve) => setTimeout(resolve, 5));
        throw new Error('store away');
      }
      return { outcomes: items.map((value) => ({ status: 'fulfilled' as const, value })) };
    }, 10);
    const a = commit.submit('a');
    const b = commit.submit('b');
    await expect(a.result).rejects.toThrow('store away');
    await expect(b.result).resolves.toBe('b');
  });
});
