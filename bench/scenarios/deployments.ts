/**
 * (f) Deployments: push → applied latency, and what following deployments costs the webhook path.
 *
 * 200 agents, one per public project, each reporting a GitRepository and a Kustomization on it;
 * the stand-in controllers take no time: on every push frame the agent at once reports the
 * source fetched and the Kustomization applied at that commit, in one status frame. The GitLab
 * API is the test stand-in (test/support/fake-gitlab.ts) in the runner, so every deployment
 * also owes its two commit statuses, posted at GitLab's default pace. An open loop of webhooks (BENCH_DEPLOY_RATE, 200/s: one push
 * a second per project) for BENCH_SECONDS.
 *
 * The same load runs against a baseline kasgate (BENCH_BASELINE; by default where this branch left
 * main: no cluster state, no deployments, status frames ignored) in the same rounds, so that the webhook figures compare
 * this work with its absence on the same machine at the same time.
 *
 * Push → applied is kasgate's own measure, per deployment: from the webhook's arrival
 * (`received_at`) to the state `applied` (read from the deployments table after the window).
 */
import pg from 'pg';
import { randomBytes } from 'node:crypto';
import { figuresOf, type Figure, type FigureSpec } from '../support/figures.js';
import { summarize } from '../support/stats.js';
import { bodyTemplates, openLoop, projectPath } from '../driver/pushes.js';
import { createAgentsViaApi, createDeployment, type BenchAgent, type Deployment } from '../support/deployment.js';
import { startKasgate, type KasgateOptions, type ServerProcess } from '../support/servers.js';
import { exportBaseline, type Baseline } from '../support/baseline.js';
import { startFakeGitLab } from '../../test/support/fake-gitlab.js';
import { meterCpu, sleep, watchInternals, webhookTargets, type ScenarioContext, type Target } from './context.js';
import { formatCpu } from '../support/cpu.js';

const GROUP = 'dep';
const FIRST_PROJECT_ID = 700_000;

interface Variant {
  label: 'branch' | 'baseline';
  server: ServerProcess;
  deployment: Deployment;
  agents: BenchAgent[];
}

export interface DeploymentsEnv {
  databaseUrl: string;
  redisUrl: string;
  kasgateOptions(name: string): KasgateOptions;
  /** Servers started here, for the runner to stop (Ctrl-C included). */
  servers: ServerProcess[];
}

async function highestEventId(databaseUrl: string, schema: string): Promise<string> {
  const client = new pg.Client({ connectionString: databaseUrl, options: `-c search_path=${schema}` });
  await client.connect();
  try {
    return (await client.query<{ max: string | null }>('SELECT max(id)::text AS max FROM push_events')).rows[0]?.max ?? '0';
  } finally {
    await client.end();
  }
}

/** Applied deployments of the events after `afterId`: push → applied in ms, once all `expected` are there (or the wait ends). */
async function appliedLatencies(databaseUrl: string, schema: string, afterId: string, expected: number, waitMs: number) {
  const client = new pg.Client({ connectionString: databaseUrl, options: `-c search_path=${schema}` });
  await client.connect();
  try {
    const deadline = Date.now() + waitMs;
    for (;;) {
      const { rows } = await client.query<{ ms: number; state: string }>(
        `SELECT d.state, extract(epoch FROM d.state_at - e.received_at) * 1000 AS ms
         FROM deployments d JOIN push_events e ON e.id = d.event_id WHERE d.event_id > $1`,
        [afterId],
      );
      const applied = rows.filter((r) => r.state === 'applied').map((r) => Number(r.ms));
      if (applied.length >= expected || Date.now() > deadline) return { applied, created: rows.length };
      await sleep(250);
    }
  } finally {
    await client.end();
  }
}

async function measure(ctx: ScenarioContext, env: DeploymentsEnv, variant: Variant, statusesPosted: () => number) {
  const { agents, rate, seconds } = ctx.options.deployments;
  const templates = bodyTemplates(GROUP, agents, FIRST_PROJECT_ID);
  const target: Target = { kind: 'kasgate', servers: [variant.server], agents: variant.agents, webhookSecret: variant.deployment.webhookSecret };
  const [webhookTarget] = webhookTargets(target);
  const specs = Array.from({ length: agents }, (_, i) => ({
    url: variant.server.wsUrl,
    token: variant.agents[i]!.token,
    projects: [projectPath(GROUP, i)],
    status: { project: projectPath(GROUP, i) },
  }));
  await ctx.pool.connect(specs);
  try {
    await sleep(1000);
    await openLoop(webhookTarget!, templates, rate, 1);
    await ctx.pool.settle(Infinity, 500);
    await ctx.pool.reset(true);

    const before = await highestEventId(env.databaseUrl, variant.deployment.schema);
    const internals = await watchInternals(target);
    const cpu = meterCpu(ctx, target);
    const answers: number[] = [];
    const sent = await openLoop(webhookTarget!, templates, rate, seconds, answers);
    const usage = cpu();
    const inside = await internals();
    const expected = sent.sent - sent.non2xx;
    const received = await ctx.pool.settle(expected, 1000);
    const delivery = summarize(received.samples.map((us) => us / 1000));
    const answer = summarize(answers.map((us) => us / 1000));
    const result: Record<string, number> = {
      answerP50: answer.p50,
      answerP99: answer.p99,
      ingestMs: inside.ingestMs ?? NaN,
      ingestP99Ms: inside.ingestP99Ms ?? NaN,
      deliveryP50: delivery.p50,
      deliveryP99: delivery.p99,
      non2xx: sent.non2xx,
    };
    let line = `deployments ${variant.label}: ${sent.sent} sent at ${(sent.sent / sent.sendSeconds).toFixed(0)}/s, ${sent.non2xx} non-2xx; answer p50 ${answer.p50.toFixed(2)} ms p99 ${answer.p99.toFixed(2)} ms; ingest mean ${result.ingestMs!.toFixed(2)} ms; delivery p50 ${delivery.p50.toFixed(2)} ms p99 ${delivery.p99.toFixed(2)} ms; ${formatCpu(usage)}`;
    if (variant.label === 'branch') {
      const postedBefore = statusesPosted();
      const { applied, created } = await appliedLatencies(env.databaseUrl, variant.deployment.schema, before, expected, 30_000);
      const latency = summarize(applied);
      Object.assign(result, { appliedP50: latency.p50, appliedP99: latency.p99, appliedMax: latency.max, notApplied: Math.max(0, expected - applied.length), deployments: created });
      line += `; push → applied p50 ${latency.p50.toFixed(2)} ms p99 ${latency.p99.toFixed(2)} ms max ${latency.max.toFixed(2)} ms (${applied.length}/${expected} applied); commit statuses posted so far ${postedBefore}`;
    }
    ctx.log(line);
    return result;
  } finally {
    await ctx.pool.closeAll();
  }
}

export async function deploymentsScenario(ctx: ScenarioContext, env: DeploymentsEnv): Promise<Figure[]> {
  const { agents, baseline: baselineRef } = ctx.options.deployments;
  const gitlab = await startFakeGitLab();
  for (let i = 0; i < agents; i++) gitlab.addProject({ id: FIRST_PROJECT_ID + i, path: projectPath(GROUP, i), defaultBranch: 'main' });
  // GitLab's default pace (KASGATE_GITLAB_REQUESTS_PER_SECOND 50, burst 250): two statuses per
  // deployment at 200 pushes a second is more than GitLab lets one token post (GitLab.com: 2,000
  // requests a minute), so statuses queue up and go out at that pace.
  const gitlabEnv = { KASGATE_GITLAB_URL: gitlab.url, KASGATE_GITLAB_TOKEN: gitlab.token };
  let baseline: Baseline | undefined;
  if (baselineRef) {
    try {
      baseline = exportBaseline(baselineRef, { built: ctx.options.useDist });
      ctx.log(`deployments: baseline ${baselineRef} (${baseline.commit.slice(0, 12)}) from ${baseline.root}`);
    } catch (err) {
      ctx.notes.push(`deployments: no baseline (${baselineRef}): ${(err as Error).message.split('\n')[0]}`);
    }
  }

  const variants: Variant[] = [];
  try {
    for (const label of baseline ? (['branch', 'baseline'] as const) : (['branch'] as const)) {
      const deployment = createDeployment(env.databaseUrl, env.redisUrl);
      const server = await startKasgate(deployment, {
        ...env.kasgateOptions(`kasgate-deploy-${label}`),
        env: gitlabEnv,
        ...(label === 'baseline' ? { root: baseline!.root } : {}),
      });
      env.servers.push(server);
      const names = Array.from({ length: agents }, (_, i) => `deploy-${label}-${i}-${randomBytes(2).toString('hex')}`);
      variants.push({ label, server, deployment, agents: await createAgentsViaApi(server.url, deployment.adminToken, names) });
    }

    const rounds: Record<string, number>[] = [];
    for (let round = 0; round < ctx.options.rounds; round++) {
      const merged: Record<string, number> = {};
      for (const variant of round % 2 === 0 ? variants : variants.toReversed()) {
        const result = await measure(ctx, env, variant, () => gitlab.statuses.length);
        for (const [key, value] of Object.entries(result)) merged[variant.label === 'branch' ? key : `${key}Base`] = value;
      }
      rounds.push(merged);
    }
    ctx.log(`deployments: the GitLab stand-in recorded ${gitlab.statuses.length} commit statuses in all`);

    const base = baseline ? ` (${baselineRef})` : '';
    const both = (key: string, name: string, unit: string): FigureSpec[] => [
      { key, name: `${name}, this branch`, unit, better: 'lower' },
      ...(baseline ? [{ key: `${key}Base`, name: `${name}, baseline${base}`, unit, better: 'lower' as const }] : []),
    ];
    return figuresOf(
      'deployments',
      [
        { key: 'appliedP50', name: 'push → applied p50', unit: 'ms', better: 'lower' },
        { key: 'appliedP99', name: 'push → applied p99', unit: 'ms', better: 'lower' },
        { key: 'appliedMax', name: 'push → applied max', unit: 'ms', better: 'lower' },
        { key: 'notApplied', name: 'pushes not applied within 30 s', unit: 'count', better: 'lower', informational: true },
        ...both('answerP50', 'webhook answer p50', 'ms'),
        ...both('answerP99', 'webhook answer p99', 'ms'),
        ...both('ingestMs', 'kasgate: ingest mean', 'ms'),
        ...both('ingestP99Ms', 'kasgate: ingest p99 ≤ (bucket)', 'ms'),
        ...both('deliveryP50', 'push → agent delivery p50', 'ms'),
        ...both('deliveryP99', 'push → agent delivery p99', 'ms'),
        { key: 'non2xx', name: 'non-2xx + errors', unit: 'count', better: 'lower', informational: true },
      ],
      new Map([['kasgate', rounds]]),
    );
  } finally {
    await Promise.all(variants.map((v) => v.server.stop().catch(() => {})));
    for (const v of variants) await v.deployment.cleanup().catch(() => {});
    await gitlab.close();
  }
}
