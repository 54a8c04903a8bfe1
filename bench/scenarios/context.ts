/** What every scenario receives from the runner, and the helpers they share. */
import autocannon from 'autocannon';
import type { BenchOptions } from '../support/options.js';
import type { ServerProcess, TargetKind } from '../support/servers.js';
import type { BenchAgent } from '../support/deployment.js';
import type { SubscriberPool } from '../driver/subscribers.js';
import type { ClientSpec } from '../driver/subscriber-protocol.js';
import { nowUs } from '../driver/clock.js';
import { cpuMeter } from '../support/cpu.js';
import { internalsWindow, type Internals } from '../support/internals.js';
import type { Target as WebhookTarget } from '../driver/pushes.js';
import { webhookHeaders } from '../driver/pushes.js';

/** A system under test: one or more server processes of one kind. */
export interface Target {
  kind: TargetKind;
  servers: ServerProcess[];
  /** Agent tokens (kasgate); the floor takes any socket. */
  agents?: BenchAgent[];
  webhookSecret?: string;
}

export interface ProfileWindow {
  scenario: string;
  target: string;
  pids: number[];
  startUs: number;
  endUs: number;
}

export interface ScenarioContext {
  options: BenchOptions;
  pool: SubscriberPool;
  log(message: string): void;
  windows: ProfileWindow[];
  /** Anything odd seen during the run, written to the results. */
  notes: string[];
}

/** Connects the target's agent sockets; connection attempts the server refused are noted. */
export async function connectAgents(ctx: ScenarioContext, scenario: string, target: Target, specs: ClientSpec[]): Promise<void> {
  const { retried, errors } = await ctx.pool.connect(specs);
  if (retried > 0) {
    const note = `${scenario} ${label(target)}: ${retried} of ${specs.length} agent connection attempts were refused and retried (${errors.join('; ')})`;
    ctx.log(`warning: ${note}`);
    ctx.notes.push(note);
  }
}

/**
 * Agent sockets for a target: agent i subscribes to `projectOf(i)` and connects to one of the
 * target's servers, the first share of agents to the first server and so on, so agents of one
 * project (i, i + projects, ...) land on different replicas.
 */
export function clientSpecs(target: Target, count: number, projectOf: (i: number) => string): ClientSpec[] {
  if (target.agents && target.agents.length < count) throw new Error(`${target.kind}: ${count} agents wanted, ${target.agents.length} registered`);
  return Array.from({ length: count }, (_, i) => ({
    url: target.servers[Math.floor((i * target.servers.length) / count)]!.wsUrl,
    ...(target.agents ? { token: target.agents[i]!.token } : {}),
    projects: [projectOf(i)],
  }));
}

export function webhookTargets(target: Target): WebhookTarget[] {
  return target.servers.map((server) => ({ url: server.url, headers: webhookHeaders(target.webhookSecret) }));
}

/** Closed-loop load with autocannon: `connections` in all, shared over the target's servers. */
export async function cannon(target: Target, bodies: string[], connections: number, seconds: number) {
  const share = Math.max(1, Math.round(connections / target.servers.length));
  const startUs = nowUs();
  const results = await Promise.all(
    webhookTargets(target).map((t) =>
      autocannon({
        url: `${t.url}/webhooks/gitlab`,
        connections: share,
        duration: seconds,
        timeout: 10,
        requests: bodies.map((body) => ({ method: 'POST', headers: t.headers, body })),
      }),
    ),
  );
  const endUs = nowUs();
  return {
    startUs,
    endUs,
    ok: results.reduce((n, r) => n + r['2xx'], 0),
    non2xx: results.reduce((n, r) => n + r.non2xx, 0),
    errors: results.reduce((n, r) => n + r.errors + r.timeouts, 0),
    seconds: (endUs - startUs) / 1e6,
  };
}

/** CPU of the server(s), the subscriber processes and the runner (the webhook sender) over a window. */
export function meterCpu(ctx: ScenarioContext, target: Target) {
  return cpuMeter({ server: target.servers.map((s) => s.pid), subscribers: ctx.pool.pids, sender: [process.pid] });
}

/**
 * Measures every target `rounds` times, the targets back to back within a round, in reverse
 * order every other round so that neither side always runs first.
 */
export async function inRounds<R extends Record<string, number>>(
  targets: Target[],
  rounds: number,
  measure: (target: Target) => Promise<R>,
): Promise<Map<TargetKind, R[]>> {
  const results = new Map<TargetKind, R[]>(targets.map((t) => [t.kind, []]));
  for (let round = 0; round < rounds; round++) {
    for (const target of round % 2 === 0 ? targets : targets.toReversed()) results.get(target.kind)!.push(await measure(target));
  }
  return results;
}

/** kasgate's internal means over a window (see internals.ts); nothing for the floor. */
export async function watchInternals(target: Target): Promise<() => Promise<Partial<Internals>>> {
  if (target.kind !== 'kasgate') return async () => ({});
  return internalsWindow(target.servers.map((s) => s.url));
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export function label(target: Target): string {
  return target.servers.length > 1 ? `${target.kind} ×${target.servers.length}` : target.kind;
}
