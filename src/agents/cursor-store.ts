/**
 * Agent cursors: the last event id each agent acknowledged. Acks are coalesced in memory and
 * written once a second: a cursor only saves replay work, so losing the last second of acks
 * in a crash costs duplicates (which agents dedup), never a lost push.
 */
import type pg from 'pg';
import type { Logger } from 'pino';

export function createCursorStore(pool: pg.Pool, log: Logger, flushIntervalMs = 1000) {
  let pending = new Map<string, bigint>();
  let flushing: Promise<void> | undefined;

  async function flush(): Promise<void> {
    if (pending.size === 0) return;
    const batch = pending;
    pending = new Map();
    const ids = [...batch.keys()];
    const events = [...batch.values()].map(String);
    try {
      await pool.query(
        `INSERT INTO agent_cursors AS c (agent_id, event_id, updated_at)
         SELECT a, e, now() FROM unnest($1::uuid[], $2::bigint[]) AS x(a, e)
         WHERE EXISTS (SELECT 1 FROM agents WHERE id = a)
         ON CONFLICT (agent_id) DO UPDATE
           SET event_id = GREATEST(c.event_id, excluded.event_id), updated_at = excluded.updated_at`,
        [ids, events],
      );
    } catch (err) {
      log.warn({ err: (err as Error).message, agents: ids.length }, 'could not store agent cursors; will retry');
      for (const [agent, id] of batch) record(agent, id);
    }
  }

  function record(agentId: string, eventId: bigint): void {
    const current = pending.get(agentId);
    if (current === undefined || eventId > current) pending.set(agentId, eventId);
  }

  const flushInBackground = () => {
    if (!flushing) flushing = flush().finally(() => (flushing = undefined));
  };
  const timer = setInterval(flushInBackground, flushIntervalMs);
  timer.unref();

  return {
    ack(agentId: string, eventId: string): void {
      record(agentId, BigInt(eventId));
    },

    /** Writes pending acks now rather than at the next tick (an agent left: it may resume elsewhere). */
    flushSoon(): void {
      flushInBackground();
    },

    async get(agentId: string): Promise<string | undefined> {
      const buffered = pending.get(agentId);
      const { rows } = await pool.query<{ event_id: string }>('SELECT event_id FROM agent_cursors WHERE agent_id = $1', [
        agentId,
      ]);
      const stored = rows[0] ? BigInt(rows[0].event_id) : undefined;
      const best = buffered !== undefined && (stored === undefined || buffered > stored) ? buffered : stored;
      return best === undefined ? undefined : String(best);
    },

    async close(): Promise<void> {
      clearInterval(timer);
      await flushing;
      await flush();
    },
  };
}

export type CursorStore = ReturnType<typeof createCursorStore>;
