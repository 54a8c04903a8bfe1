/**
 * (b) Latency: an open loop of webhooks (500/s for 5 s by default, each stamped when it leaves)
 * to 200 agents over 100 public projects; push → agent delivery p50, p99 and max.
 */
import { figuresOf, type Figure } from '../support/figures.js';
import { summarize } from '../support/stats.js';
import { bodyTemplates, openLoop, projectPath } from '../driver/pushes.js';
import { nowUs } from '../driver/clock.js';
import { clientSpecs, connectAgents, label, meterCpu, webhookTargets, inRounds, watchInternals, type ScenarioContext, type Target } from './context.js';
import { formatCpu } from '../support/cpu.js';
import { formatInternals, INTERNAL_FIGURES, type Internals } from '../support/internals.js';

const GROUP = 'lat';

async function measure(ctx: ScenarioContext, target: Target) {
  const { agents, projects } = ctx.options.throughput;
  const { rate, seconds } = ctx.options.latency;
  const perProject = agents / projects;
  const templates = bodyTemplates(GROUP, projects, 600_000);
  const [webhookTarget] = webhookTargets(target);
  await connectAgents(ctx, 'latency', target, clientSpecs(target, agents, (i) => projectPath(GROUP, i % projects)));
  try {
    await openLoop(webhookTarget!, templates, rate, 1);
    await ctx.pool.settle(Infinity, 300);
    await ctx.pool.reset(true);

    const startUs = nowUs();
    const internals = await watchInternals(target);
    const cpu = meterCpu(ctx, target);
    const sent = await openLoop(webhookTarget!, templates, rate, seconds);
    const usage = cpu();
    const inside = await internals();
    ctx.windows.push({ scenario: 'latency', target: label(target), pids: target.servers.map((s) => s.pid), startUs, endUs: nowUs() });
    const expected = (sent.sent - sent.non2xx) * perProject;
    const received = await ctx.pool.settle(expected, 1000);
    const latency = summarize(received.samples.map((us) => us / 1000));
    ctx.log(
      `latency ${label(target)}: ${sent.sent} sent at ${(sent.sent / sent.sendSeconds).toFixed(0)}/s, ${sent.non2xx} non-2xx; ` +
        `${received.frames}/${expected} frames; p50 ${latency.p50.toFixed(2)} ms p99 ${latency.p99.toFixed(2)} ms max ${latency.max.toFixed(2)} ms; ${formatCpu(usage)}` +
        (inside.ingestMs === undefined ? '' : `; ${formatInternals(inside as Internals)}`),
    );
    return { ...latency, non2xx: sent.non2xx, missing: Math.max(0, expected - received.frames), ...(inside as Record<string, number>) };
  } finally {
    await ctx.pool.closeAll();
  }
}

export async function latencyScenario(ctx: ScenarioContext, targets: Target[]): Promise<Figure[]> {
  const results = await inRounds(targets, ctx.options.rounds, (target) => measure(ctx, target));
  return figuresOf('latency', [
    { key: 'p50', name: 'delivery p50', unit: 'ms', better: 'lower' },
    // Issue 16's target: every webhook is durable before its 202, which the floor is not.
    { key: 'p99', name: 'delivery p99', unit: 'ms', better: 'lower', target: { max: 2 } },
    { key: 'max', name: 'delivery max', unit: 'ms', better: 'lower' },
    { key: 'non2xx', name: 'non-2xx + errors', unit: 'count', better: 'lower', informational: true },
    { key: 'missing', name: 'frames missing', unit: 'count', better: 'lower', informational: true },
    ...INTERNAL_FIGURES,
  ], results);
}
