/**
 * (a) Throughput and (e) two replicas: closed-loop webhooks (autocannon, 32 connections in all)
 * while 200 agents, two per project over 100 public projects, receive the pushes.
 */
import { figuresOf, type Figure } from '../support/figures.js';
import { bodyTemplates, projectPath, staticBodies } from '../driver/pushes.js';
import { cannon, clientSpecs, connectAgents, label, meterCpu, inRounds, watchInternals, type ScenarioContext, type Target } from './context.js';
import { formatCpu } from '../support/cpu.js';
import { formatInternals, INTERNAL_FIGURES, type Internals } from '../support/internals.js';

const GROUP = 'tp';

async function measure(ctx: ScenarioContext, scenario: string, target: Target) {
  const { agents, projects, connections, seconds, warmupSeconds } = ctx.options.throughput;
  const perProject = agents / projects;
  const bodies = staticBodies(bodyTemplates(GROUP, projects, 500_000));
  await connectAgents(ctx, scenario, target, clientSpecs(target, agents, (i) => projectPath(GROUP, i % projects)));
  try {
    await cannon(target, bodies, connections, warmupSeconds);
    await ctx.pool.settle(Infinity, 300);
    await ctx.pool.reset();

    const internals = await watchInternals(target);
    const cpu = meterCpu(ctx, target);
    const run = await cannon(target, bodies, connections, seconds);
    const usage = cpu();
    const inside = await internals();
    ctx.windows.push({ scenario, target: label(target), pids: target.servers.map((s) => s.pid), startUs: run.startUs, endUs: run.endUs });
    const received = await ctx.pool.settle(run.ok * perProject, 1000);
    const deliverySeconds = Math.max(run.seconds, (received.lastUs - run.startUs) / 1e6);
    ctx.log(
      `${scenario} ${label(target)}: ${run.ok} accepted, ${run.non2xx} non-2xx, ${run.errors} errors in ${run.seconds.toFixed(1)} s; ` +
        `${received.frames}/${run.ok * perProject} frames delivered; ${formatCpu(usage)}` +
        (inside.ingestMs === undefined ? '' : `; ${formatInternals(inside as Internals)}`),
    );
    return {
      webhooksPerSec: run.ok / run.seconds,
      non2xx: run.non2xx + run.errors,
      deliveriesPerSec: received.frames / deliverySeconds,
      // autocannon does not count the answers still in flight when it stops; their frames arrive all the same.
      missing: Math.max(0, run.ok * perProject - received.frames),
      ...(inside as Record<string, number>),
    };
  } finally {
    await ctx.pool.closeAll();
  }
}

export async function throughputScenario(ctx: ScenarioContext, scenario: 'throughput' | 'replicas', targets: Target[]): Promise<Figure[]> {
  const results = await inRounds(targets, ctx.options.rounds, (target) => measure(ctx, scenario, target));
  return figuresOf(scenario, [
    { key: 'webhooksPerSec', name: 'webhooks/s', unit: '/s', better: 'higher', ...(scenario === 'throughput' ? { target: { min: 0.7 } } : {}) },
    { key: 'deliveriesPerSec', name: 'deliveries/s', unit: '/s', better: 'higher' },
    { key: 'non2xx', name: 'non-2xx + errors', unit: 'count', better: 'lower', informational: true },
    { key: 'missing', name: 'frames missing', unit: 'count', better: 'lower', informational: true },
    ...INTERNAL_FIGURES,
  ], results);
}
