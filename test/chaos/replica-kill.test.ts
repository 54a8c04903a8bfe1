/** Chaos (a): one of two replicas is SIGKILLed mid-stream; its agents resume on the other. */
import { afterAll, expect, test } from 'vitest';
import { ChaosRig, NO_LOSS } from './harness.js';

const rig = new ChaosRig({ name: 'kill', seed: 1 });
afterAll(async () => {
  await rig.close();
});

test('SIGKILL of a replica mid-stream loses no accepted event', { timeout: 60_000 }, async () => {
  await rig.start();
  const onVictim = () => rig.agents.filter(({ agent }) => agent.connectedTo === rig.replicas[0]!.wsUrl).length;
  const agentsOnVictim = onVictim();
  expect(agentsOnVictim).toBeGreaterThan(0);

  await rig.stream({
    pushes: 300,
    lanes: 4,
    paceMs: 80,
    at: [
      {
        accepted: 100,
        run: async () => {
          const exit = await rig.kill(0, 'SIGKILL');
          expect(exit.signal).toBe('SIGKILL');
        },
      },
    ],
  });

  const report = await rig.verify('replica SIGKILL');
  expect(report).toMatchObject(NO_LOSS);
  expect(report.reconnects).toBeGreaterThanOrEqual(agentsOnVictim);
  expect(rig.agents.every(({ agent }) => agent.connectedTo === rig.replicas[1]!.wsUrl)).toBe(true);
});
