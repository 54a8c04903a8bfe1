/**
 * The chaos rig: two replicas as child processes on one deployment, a dozen resuming agents with
 * mixed rights, and a paced stream of pushes that GitLab-style retries (same Idempotency-Key, the
 * other replica) until answered 202. The verdict compares what every agent received with what the
 * access rule entitles it to, over every event answered 202.
 */
import { createDeployment, startReplicaProcess, type Deployment, type ExitStatus, type ReplicaProcess } from '../support/replica-process.js';
import { startResumingAgent, type ResumingAgent } from '../support/resuming-agent.js';
import { pushBody } from '../support/fixtures.js';
import { entitled, expectedIds, type AgentRights, type LoggedPush } from '../replay/entitlement.js';
import { loggedEvents, seededRandom, VISIBILITIES } from '../replay/support.js';

const PROJECTS = [
  { path: 'Chaos/App', id: 5001 },
  { path: 'chaos/infra', id: 5002 },
  { path: 'chaos/sub/lib', id: 5003 },
  { path: 'other/svc', id: 5004 },
];
const CONFIG_PROJECTS = ['chaos/app', 'chaos/infra', 'other/svc', 'elsewhere/cfg'];

/** Mixed rights: config projects, group and project grants, none; all or part of the projects. */
function rightsOf(i: number): AgentRights {
  const paths = PROJECTS.map((p) => p.path.toLowerCase());
  return {
    configProject: CONFIG_PROJECTS[i % 4]!,
    groups: i % 3 === 0 ? ['chaos'] : [],
    projects: i % 3 === 1 ? ['other/svc'] : [],
    subscribed: i % 2 === 0 ? paths : [paths[i % 4]!, paths[(i + 1) % 4]!],
  };
}

export interface ChaosOptions {
  name: string;
  agents?: number;
  redisUrl?: string;
  seed?: number;
}

export interface StreamOptions {
  pushes: number;
  lanes: number;
  /** Pause of each lane between two pushes. */
  paceMs: number;
  /** Called once when this many pushes were accepted. */
  at?: { accepted: number; run: () => Promise<void> }[];
}

export interface ChaosReport {
  accepted: number;
  deliveriesExpected: number;
  lost: number;
  duplicates: number;
  outOfOrder: number;
  resyncs: number;
  reconnects: number;
  webhookRetries: number;
  /** Events an agent received although the rule does not entitle it to them. */
  leaks: string[];
}

export class ChaosRig {
  readonly deployment: Deployment;
  readonly replicas: (ReplicaProcess | undefined)[] = [undefined, undefined];
  readonly agents: { rights: AgentRights; agent: ResumingAgent }[] = [];
  /** Events answered 202, by id. */
  readonly accepted = new Map<string, LoggedPush>();
  webhookRetries = 0;
  private ports: number[] = [];
  private readonly random: () => number;

  constructor(private readonly options: ChaosOptions) {
    this.random = seededRandom(options.seed ?? 42);
    this.deployment = createDeployment({
      redisUrl: options.redisUrl,
      env: { KASGATE_SWEEP_SECONDS: '1', KASGATE_HEARTBEAT_SECONDS: '2', KASGATE_DRAIN_SECONDS: '2' },
    });
  }

  async start(): Promise<void> {
    const started = await Promise.all([0, 1].map((i) => startReplicaProcess(this.deployment.env, { name: `${this.options.name}-${i}` })));
    started.forEach((r, i) => (this.replicas[i] = r));
    this.ports = started.map((r) => r.port);
    const base = started[0]!.url;
    for (let i = 0; i < (this.options.agents ?? 12); i++) {
      const rights = rightsOf(i);
      const { id, token } = await this.deployment.createAgent(base, `${this.options.name}-agent-${i}`, rights.configProject);
      const grant = await this.deployment.admin(base, 'PUT', `/agents/${id}/grants`, { projects: rights.projects, groups: rights.groups });
      if (grant.status !== 200) throw new Error(`granting agent ${i}: ${grant.status} ${JSON.stringify(grant.body)}`);
      const urls = this.ports.map((port) => `ws://127.0.0.1:${port}`);
      // Every third agent resumes from the cursor its acks stored, like an agent that restarted.
      const resume = i % 3 === 2 ? 'stored-cursor' : 'last-seen';
      const agent = startResumingAgent({ name: `agent-${i}`, token, urls, projects: rights.subscribed, startAfter: '0', firstUrl: i % 2, resume });
      this.agents.push({ rights, agent });
    }
    await Promise.all(this.agents.map(({ agent }) => agent.waitSubscribed(15_000)));
  }

  url(i: number): string {
    return `http://127.0.0.1:${this.ports[i]}`;
  }

  kill(i: number, signal: NodeJS.Signals): Promise<ExitStatus> {
    const replica = this.replicas[i]!;
    replica.kill(signal);
    return replica.exited;
  }

  /** Starts replica i again on its port. */
  async restart(i: number): Promise<void> {
    this.replicas[i] = await startReplicaProcess(this.deployment.env, { name: `${this.options.name}-${i}`, port: this.ports[i] });
  }

  /** One push, sent like GitLab would: retried with the same key, to the other replica, until 202. */
  private async push(n: number): Promise<void> {
    const project = PROJECTS[Math.floor(this.random() * PROJECTS.length)]!;
    const visibility = VISIBILITIES[Math.floor(this.random() * VISIBILITIES.length)]!;
    const body = pushBody({ path: project.path, projectId: project.id, visibility, after: n.toString(16).padStart(40, 'c') });
    const key = `${this.options.name}-push-${n}`;
    const deadline = Date.now() + 30_000;
    for (let attempt = 0; ; attempt++) {
      const target = this.url((n + attempt) % 2);
      try {
        const res = await this.deployment.postWebhook(target, body, { 'idempotency-key': key });
        const answer = (await res.json()) as { eventId?: string };
        if (res.status === 202 && answer.eventId) {
          this.accepted.set(answer.eventId, { id: answer.eventId, path: project.path, visibility });
          return;
        }
      } catch {
        // Refused or reset: the replica is down or going down.
      }
      if (Date.now() > deadline) throw new Error(`push ${n} not accepted within 30 s`);
      this.webhookRetries++;
      await new Promise((r) => setTimeout(r, 50 + attempt * 50));
    }
  }

  async stream(options: StreamOptions): Promise<void> {
    const pending = [...(options.at ?? [])].sort((x, y) => x.accepted - y.accepted);
    const chores: Promise<void>[] = [];
    let next = 0;
    await Promise.all(
      Array.from({ length: options.lanes }, async () => {
        while (next < options.pushes) {
          await this.push(next++);
          while (pending[0] && this.accepted.size >= pending[0].accepted) chores.push(pending.shift()!.run());
          await new Promise((r) => setTimeout(r, options.paceMs));
        }
      }),
    );
    await Promise.all(chores);
  }

  /** Waits for every entitled delivery (up to 30 s), then reports what arrived against the rule. */
  async verify(label: string): Promise<ChaosReport> {
    const accepted = [...this.accepted.values()];
    const missing = new Map<string, string[]>();
    await Promise.all(
      this.agents.map(async ({ rights, agent }) => {
        const expected = expectedIds(rights, accepted);
        try {
          await agent.waitForEvents(expected, 30_000);
        } catch {
          missing.set(agent.name, expected.filter((id) => !agent.received.has(id)));
        }
      }),
    );
    // Nothing beyond the rule either: check every received event against the log.
    const logged = new Map((await loggedEvents(this.deployment.schema)).map((e) => [e.id, e]));
    const leaks: string[] = [];
    for (const { rights, agent } of this.agents) {
      for (const id of agent.received.keys()) {
        const event = logged.get(id);
        if (!event || !entitled(rights, event)) leaks.push(`${agent.name} got ${id}`);
      }
    }
    const sum = (f: (a: ResumingAgent) => number) => this.agents.reduce((n, { agent }) => n + f(agent), 0);
    const report: ChaosReport = {
      accepted: accepted.length,
      deliveriesExpected: this.agents.reduce((n, { rights }) => n + expectedIds(rights, accepted).length, 0),
      lost: [...missing.values()].reduce((n, ids) => n + ids.length, 0),
      duplicates: sum((a) => a.duplicates),
      outOfOrder: sum((a) => a.outOfOrder),
      resyncs: sum((a) => a.resyncs),
      reconnects: sum((a) => a.connections - 1),
      webhookRetries: this.webhookRetries,
      leaks,
    };
    console.log(`chaos ${label}: ${JSON.stringify({ ...report, leaks: leaks.length })}`);
    for (const [name, ids] of missing) console.log(`chaos ${label}: ${name} missing ${ids.length}: ${ids.slice(0, 20).join(', ')}`);
    if (report.lost > 0) {
      for (const replica of this.replicas) console.log(`--- ${replica?.name} log tail ---\n${replica?.logs().slice(-30).join('\n')}`);
    }
    return report;
  }

  async close(): Promise<void> {
    await Promise.all(this.agents.map(({ agent }) => agent.stop()));
    await Promise.all(
      this.replicas.map(async (replica) => {
        replica?.kill('SIGKILL');
        await replica?.exited;
      }),
    );
    await this.deployment.cleanup();
  }
}

/** What every chaos test demands: nothing lost, nothing leaked, nothing reordered, no resync needed. */
export const NO_LOSS = { lost: 0, leaks: [], outOfOrder: 0, resyncs: 0 };
