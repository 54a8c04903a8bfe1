/**
 * (c) Fan-out: every agent (2,000; 10,000 with BENCH_FULL=1) watches one public project; ten
 * pushes, one at a time; for each, the time from sending the webhook until the last agent has
 * the frame. Reported as p50 and max over the pushes.
 */
import { figuresOf, type Figure } from '../support/figures.js';
import { summarize } from '../support/stats.js';
import { bodyTemplates, post, projectPath, stamp } from '../driver/pushes.js';
import { nowUs } from '../driver/clock.js';
import { clientSpecs, connectAgents, label, meterCpu, webhookTargets, inRounds, type ScenarioContext, type Target } from './context.js';
import { formatCpu } from '../support/cpu.js';

const GROUP = 'fan';
const PUSH_TIMEOUT_MS = 20_000;

async function measure(ctx: ScenarioContext, target: Target) {
  const { agents, pushes } = ctx.options.fanout;
  const [template] = bodyTemplates(GROUP, 1, 700_000);
  const [webhookTarget] = webhookTargets(target);
  const connectStarted = Date.now();
  await connectAgents(ctx, 'fanout', target, clientSpecs(target, agents, () => projectPath(GROUP, 0)));
  const connectSeconds = (Date.now() - connectStarted) / 1000;
  try {
    const times: number[] = [];
    let incomplete = 0;
    let startUs = nowUs();
    let cpu = meterCpu(ctx, target);
    // The first push warms up the path and is not counted.
    for (let i = 0; i <= pushes; i++) {
      await ctx.pool.reset();
      const push = stamp(template!);
      const status = await post(webhookTarget!, push.body);
      const received =
        status === 202 ? await ctx.pool.until((m) => (m.keys.get(push.sha)?.count ?? 0) >= agents, PUSH_TIMEOUT_MS) : undefined;
      const entry = received?.keys.get(push.sha);
      if (!entry || entry.count < agents) incomplete++;
      else if (i > 0) times.push((entry.lastUs - push.sentUs) / 1000);
      if (i === 0) {
        startUs = nowUs();
        cpu = meterCpu(ctx, target);
      }
    }
    const usage = cpu();
    ctx.windows.push({ scenario: 'fanout', target: label(target), pids: target.servers.map((s) => s.pid), startUs, endUs: nowUs() });
    const summary = summarize(times);
    ctx.log(
      `fanout ${label(target)}: ${agents} agents connected in ${connectSeconds.toFixed(1)} s; ` +
        `all agents had the frame after p50 ${summary.p50.toFixed(1)} ms, max ${summary.max.toFixed(1)} ms` +
        (incomplete ? `; ${incomplete} pushes were refused or did not reach every agent within ${PUSH_TIMEOUT_MS} ms` : '') +
        `; ${formatCpu(usage)}`,
    );
    return { ...summary, incomplete, connectPerSec: agents / connectSeconds };
  } finally {
    await ctx.pool.closeAll();
  }
}

export async function fanoutScenario(ctx: ScenarioContext, targets: Target[]): Promise<Figure[]> {
  const { agents } = ctx.options.fanout;
  const results = await inRounds(targets, ctx.options.rounds, (target) => measure(ctx, target));
  return figuresOf('fanout', [
    { key: 'p50', name: `all ${agents} agents have it, p50`, unit: 'ms', better: 'lower', target: { max: 1.2 } },
    { key: 'max', name: `all ${agents} agents have it, max`, unit: 'ms', better: 'lower' },
    { key: 'incomplete', name: 'pushes not reaching all', unit: 'count', better: 'lower', informational: true },
    { key: 'connectPerSec', name: 'agent connects/s', unit: '/s', better: 'higher', informational: true },
  ], results);
}
