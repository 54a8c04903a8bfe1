/**
 * (d) Capacity: N idle agents (each subscribed to one project) on a fresh server; its RSS and
 * heap growth per connection (after a full GC), and event-loop delay while they sit idle.
 */
import { figuresOf, type Figure } from '../support/figures.js';
import { clientSpecs, connectAgents, label, sleep, inRounds, type ScenarioContext, type Target } from './context.js';
import { projectPath } from '../driver/pushes.js';

const GROUP = 'idle';

/**
 * Memory per connection is the growth over the second half of the agents: the first half also
 * pays one-off costs (compiled code, pools and tables growing), which are not per connection.
 */
async function measure(ctx: ScenarioContext, target: Target, agents: number) {
  const server = target.servers[0]!;
  const specs = clientSpecs(target, agents, (i) => projectPath(GROUP, i % 100));
  const half = Math.floor(agents / 2);
  const empty = await server.stats({ gc: true });
  const connectStarted = Date.now();
  await connectAgents(ctx, 'capacity', target, specs.slice(0, half));
  await sleep(1000);
  const middle = await server.stats({ gc: true });
  await connectAgents(ctx, 'capacity', target, specs.slice(half));
  const connectSeconds = (Date.now() - connectStarted) / 1000;
  try {
    await sleep(1000);
    await server.stats({ reset: true });
    await sleep(ctx.options.capacity.idleSeconds * 1000);
    const idle = await server.stats({ reset: true });
    const full = await server.stats({ gc: true });
    const open = (await ctx.pool.collect()).open;
    const mib = (bytes: number) => (bytes / 2 ** 20).toFixed(0);
    ctx.log(
      `capacity ${label(target)}: ${open}/${agents} sockets open (connected in ${connectSeconds.toFixed(1)} s); ` +
        `RSS ${mib(empty.rss)} → ${mib(middle.rss)} → ${mib(full.rss)} MiB, heap ${mib(empty.heapUsed)} → ${mib(middle.heapUsed)} → ${mib(full.heapUsed)} MiB`,
    );
    const perConnection = (after: number, before: number, count: number) => (after - before) / count / 1024;
    return {
      rssPerConnKiB: perConnection(full.rss, middle.rss, agents - half),
      rssPerConnFromEmptyKiB: perConnection(full.rss, empty.rss, agents),
      heapPerConnKiB: perConnection(full.heapUsed, middle.heapUsed, agents - half),
      heapMiB: full.heapUsed / 2 ** 20,
      loopDelayP99: idle.loopDelay.p99,
      loopDelayMax: idle.loopDelay.max,
      connectPerSec: agents / connectSeconds,
    };
  } finally {
    await ctx.pool.closeAll();
  }
}

export async function capacityScenario(ctx: ScenarioContext, targets: Target[], agents: number): Promise<Figure[]> {
  // One round: memory growth is steady, and every round would cost N connections more.
  const results = await inRounds(targets, 1, (target) => measure(ctx, target, agents));
  return figuresOf('capacity', [
    { key: 'rssPerConnKiB', name: `RSS per idle connection (N=${agents})`, unit: 'KiB', better: 'lower', target: { max: 1.3 } },
    { key: 'heapPerConnKiB', name: 'heap per idle connection', unit: 'KiB', better: 'lower' },
    { key: 'rssPerConnFromEmptyKiB', name: 'RSS per connection, from empty', unit: 'KiB', better: 'lower', informational: true },
    { key: 'heapMiB', name: 'heap used with N idle', unit: 'MiB', better: 'lower' },
    { key: 'loopDelayP99', name: 'event-loop delay p99, idle', unit: 'ms', better: 'lower', informational: true },
    { key: 'loopDelayMax', name: 'event-loop delay max, idle', unit: 'ms', better: 'lower', informational: true },
    { key: 'connectPerSec', name: 'agent connects/s', unit: '/s', better: 'higher', informational: true },
  ], results);
}
