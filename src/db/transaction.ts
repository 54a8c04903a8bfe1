/** Transactions, and the per-agent lock that serializes what changes one agent's cluster state. */
import type pg from 'pg';

/** Runs `work` in a transaction on a client of `pool`; rolls back on any error. */
export async function inTransaction<T>(pool: pg.Pool, work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const result = await work(client);
    await client.query('COMMIT');
    return result;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  } finally {
    client.release();
  }
}

/**
 * The advisory-lock class of agent locks (the two-key form; the event log's single-key lock is
 * another key space). Status writes, delivery records and the timeout sweep of one agent take
 * it, so that a deployment created from a delivery and the status that moves it never miss
 * each other, on any replica.
 */
const AGENT_LOCK_CLASS = 7411;

/** Takes the agents' locks for the rest of the transaction, in one order (no deadlock between two takers of several). */
export async function lockAgents(client: pg.PoolClient, agentIds: string[]): Promise<void> {
  if (agentIds.length === 0) return;
  await client.query(
    `SELECT pg_advisory_xact_lock(${AGENT_LOCK_CLASS}, k)
     FROM (SELECT DISTINCT hashtext(a) AS k FROM unnest($1::text[]) AS a ORDER BY 1) AS keys`,
    [agentIds],
  );
}

/** Takes the agent's lock if nobody holds it; false otherwise (the caller comes back later). */
export async function tryLockAgent(client: pg.PoolClient, agentId: string): Promise<boolean> {
  const { rows } = await client.query<{ locked: boolean }>(`SELECT pg_try_advisory_xact_lock(${AGENT_LOCK_CLASS}, hashtext($1)) AS locked`, [
    agentId,
  ]);
  return rows[0]?.locked === true;
}

/** Errors that retrying will not cure: the agent was deleted (foreign key), the data is refused. */
export const isPermanent = (err: unknown) => ['23503', '22P02', '23514'].includes((err as { code?: string }).code ?? '');
