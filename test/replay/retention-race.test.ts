/**
 * Retention deleting events while a replay is reading them: the agent must either receive every
 * event after its cursor or be told to resync, never silently miss the deleted ones.
 */
import { expect, test } from 'vitest';
import { useGateway } from '../support/gateway.js';
import { connectAgent } from '../support/agent-client.js';
import { pushBody } from '../support/fixtures.js';
import { queryInSchema } from '../support/isolation.js';

const BACKLOG = 20_000;
const gw = useGateway();

test('a prune that overtakes a running replay ends in a resync', { timeout: 30_000 }, async () => {
  const info = await gw.createAgent('raced', 'race/app');
  await queryInSchema(
    gw.schema,
    `INSERT INTO push_events (kind, project_id, project_path, visibility, default_branch, ref, before_sha, after_sha, received_at)
     SELECT 'push', 4500, 'race/app', 0, 'main', 'refs/heads/main', repeat('0', 40), md5(g::text) || 'abcdefgh', now() - interval '2 days'
     FROM generate_series(1, $1::int) AS g`,
    [BACKLOG],
  );
  const agent = await connectAgent(gw.wsUrl, info.token);
  await agent.subscribe(['race/app'], '0');
  // The replay has begun; the whole backlog is past the window and goes now, faster than it is read.
  await agent.waitFor((f) => f.type === 'push');
  await gw.ctx.retention.runNow();
  const live = ((await (await gw.postWebhook(pushBody({ path: 'race/app', visibility: 0, projectId: 4500 }))).json()) as { eventId: string }).eventId;
  await agent.waitFor((f) => f.type === 'push' && f.eventId === live, 20_000);
  await agent.waitFor((f) => f.type === 'resync', 5000).catch(() => undefined);

  const received = agent.pushes().length - 1;
  const resynced = agent.frames.some((f) => f.type === 'resync');
  console.log(`retention race: ${received} of ${BACKLOG} backlog events replayed before the prune; resync sent: ${resynced}`);
  expect(resynced || received === BACKLOG).toBe(true);
  // The race really happened: the prune did overtake the replay.
  expect(received).toBeLessThan(BACKLOG);
  await agent.close();
});
