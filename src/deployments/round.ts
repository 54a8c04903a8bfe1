/**
 * One transaction's worth of deployment work (tracker.ts): its client, what it changed (the
 * outcome to settle after the commit), and the commit statuses it owes, queued in the same
 * transaction (gitlab/commit-statuses/outbox.ts).
 */
import type pg from 'pg';
import type { Logger } from 'pino';
import { enqueueStatuses, type CommitStatusState, type StatusIntent } from '../gitlab/commit-statuses/outbox.js';
import type { Metrics } from '../metrics.js';
import { statusDescription, type CommitTarget } from './commit-target.js';
import type { DeploymentState } from './progress.js';

export interface TrackerOptions {
  timeoutMs: number;
  /** KASGATE_PUBLIC_URL: commit statuses link to <publicUrl>/ui/events/<id>. */
  publicUrl: string | undefined;
  /** KASGATE_GITLAB_URL: OCI artifacts' origin URLs are projects on it. */
  gitlabUrl: string | undefined;
  /** Queue commit statuses (only when the GitLab API is configured). */
  statuses: boolean;
  metrics: Metrics;
  log: Logger;
}

/** What one transaction changed: `settle` it once committed. */
export interface TrackerOutcome {
  finished: { state: DeploymentState; latencyMs: number }[];
  statusesQueued: number;
  eventIds: Set<string>;
}

export const emptyOutcome = (): TrackerOutcome => ({ finished: [], statusesQueued: 0, eventIds: new Set() });

/** Agent names never change (PATCH cannot rename); a few thousand are cached for status names. */
const NAME_CACHE = 10_000;

export class Round {
  readonly outcome = emptyOutcome();
  readonly intents: StatusIntent[] = [];
  constructor(
    readonly client: pg.PoolClient,
    readonly options: TrackerOptions,
    private readonly agentNames: Map<string, string>,
  ) {}

  async agentName(agentId: string): Promise<string | undefined> {
    if (!this.agentNames.has(agentId)) {
      const { rows } = await this.client.query<{ name: string }>('SELECT name FROM agents WHERE id = $1', [agentId]);
      if (!rows[0]) return undefined;
      if (this.agentNames.size >= NAME_CACHE) this.agentNames.delete(this.agentNames.keys().next().value!);
      this.agentNames.set(agentId, rows[0].name);
    }
    return this.agentNames.get(agentId);
  }

  async status(
    d: { id: string; eventId: string; agentId: string; kind: string; namespace: string; name: string },
    target: CommitTarget | undefined,
    state: CommitStatusState,
    description: string,
  ): Promise<void> {
    if (!this.options.statuses || !target) return;
    const agent = await this.agentName(d.agentId);
    if (agent === undefined) return;
    const targetUrl = this.options.publicUrl ? `${this.options.publicUrl}/ui/events/${d.eventId}` : null;
    this.intents.push({
      deploymentId: d.id,
      eventId: d.eventId,
      project: target.project,
      sha: target.sha,
      name: `kasgate/${agent}/${d.kind}/${d.namespace}/${d.name}`.slice(0, 255),
      state,
      ref: target.ref,
      targetUrl: targetUrl && targetUrl.length <= 255 ? targetUrl : null,
      description: statusDescription(description),
    });
  }

  async finish(): Promise<TrackerOutcome> {
    this.outcome.statusesQueued += await enqueueStatuses(this.client, this.intents);
    return this.outcome;
  }
}
