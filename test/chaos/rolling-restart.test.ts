/** Chaos (c): both replicas restarted one after the other (SIGTERM, wait, start) under load. */
import { afterAll, expect, test } from 'vitest';
import type { ExitStatus } from '../support/replica-process.js';
import { ChaosRig, NO_LOSS } from './harness.js';

const rig = new ChaosRig({ name: 'rolling', seed: 3 });
afterAll(async () => {
  await rig.close();
});

test('a rolling restart of both replicas under load loses no accepted event', { timeout: 60_000 }, async () => {
  await rig.start();
  const exits: ExitStatus[] = [];
  let rolled = false;
  let acceptedDuringRoll = 0;
  await rig.stream({
    pushes: 400,
    lanes: 4,
    paceMs: 80,
    at: [
      {
        accepted: 60,
        run: async () => {
          const before = rig.accepted.size;
          for (const i of [0, 1]) {
            exits.push(await rig.kill(i, 'SIGTERM'));
            await rig.restart(i);
          }
          acceptedDuringRoll = rig.accepted.size - before;
          rolled = true;
        },
      },
    ],
  });
  console.log(
    `chaos rolling: exits ${exits.map((e) => `${e.code} after ${e.afterSignalMs} ms`).join(', ')}; ${acceptedDuringRoll} pushes accepted during the roll`,
  );
  expect(rolled).toBe(true);
  expect(acceptedDuringRoll).toBeGreaterThan(50);
  for (const exit of exits) {
    expect(exit.code).toBe(0);
    expect(exit.afterSignalMs!).toBeLessThan(10_000);
  }
  const report = await rig.verify('rolling restart');
  expect(report).toMatchObject(NO_LOSS);
  // Every agent was drained at least once (the second replica's agents twice, if they moved to it first).
  expect(rig.agents.every(({ agent }) => agent.closes.some((c) => c.code === 1012))).toBe(true);
  expect(report.reconnects).toBeGreaterThanOrEqual(rig.agents.length);
});
