/**
 * Turns push and resync frames into Receiver calls: picks the GitRepositories a push can affect,
 * triggers their Receivers concurrently, and acks the event once they have all finished.
 */
import type { Logger } from 'pino';
import type { PushFrame } from '../protocol/kasgate-v1.js';
import { backoffDelay, sleep } from './backoff.js';
import type { EventCursor } from './event-cursor.js';
import type { AgentMetrics } from './health.js';
import { describeError } from './kube.js';
import type { ReceiverManager } from './receivers.js';
import type { ManagedRepository, RepositoryRegistry } from './repositories.js';
import type { ReceiverTrigger, TriggerPolicy } from './trigger.js';

export interface DispatcherOptions {
  registry: RepositoryRegistry;
  receivers: ReceiverManager;
  trigger: ReceiverTrigger;
  cursor: EventCursor;
  metrics: AgentMetrics;
  logger: Logger;
  policy: TriggerPolicy;
  stopSignal: AbortSignal;
  /** The receiver base URL in force now (it can change with each hello). */
  receiverBaseUrl: () => string;
  /** Sends an ack; the resume point covers it when the socket is down. */
  ack: (eventId: string) => void;
}

export class PushDispatcher {
  private readonly running = new Set<Promise<void>>();

  constructor(private readonly options: DispatcherOptions) {}

  handlePush(frame: PushFrame): void {
    const { cursor, registry, logger, metrics } = this.options;
    if (!cursor.begin(frame.eventId)) {
      logger.debug({ eventId: frame.eventId }, 'skipping a redelivered event');
      return;
    }
    metrics.pushesReceived.inc();
    const repositories = registry.matching(frame.project.path, frame.ref, frame.project.defaultBranch);
    logger.info(
      { eventId: frame.eventId, project: frame.project.path, ref: frame.ref, gitRepositories: repositories.map((r) => r.key) },
      'push received',
    );
    const body = JSON.stringify({
      source: 'kasgate',
      eventId: frame.eventId,
      project: frame.project.path,
      ref: frame.ref,
      before: frame.before,
      after: frame.after,
      receivedAt: frame.receivedAt,
    });
    this.track(
      Promise.all(repositories.map((r) => this.triggerOne(r, body))).then(() => {
        const ackId = cursor.finish(frame.eventId);
        if (ackId !== undefined) this.options.ack(ackId);
      }),
    );
  }

  /** Pushes may have been missed: reconcile everything the agent manages, once. */
  handleResync(reason: string): void {
    const repositories = this.options.registry.all();
    this.options.logger.warn({ reason, gitRepositories: repositories.length }, 'resync: triggering every managed Receiver');
    const body = JSON.stringify({ source: 'kasgate', resync: reason });
    this.track(Promise.all(repositories.map((r) => this.triggerOne(r, body))).then(() => undefined));
  }

  /** Waits for the calls under way (bounded by the caller's stop signal, which cuts retries short). */
  async idle(): Promise<void> {
    while (this.running.size > 0) await Promise.allSettled(this.running);
  }

  private track(work: Promise<void>): void {
    this.running.add(work);
    void work.finally(() => this.running.delete(work));
  }

  private async triggerOne(repository: ManagedRepository, body: string): Promise<void> {
    const { registry, trigger, metrics, logger } = this.options;
    const log = logger.child({ gitRepository: repository.key });
    try {
      const receiver = await registry.receiverFor(repository);
      const webhookPath = await this.webhookPath(repository);
      if (!webhookPath) {
        metrics.triggerFailures.inc({ reason: 'unavailable' });
        log.warn({ receiver: receiver.name }, 'the Receiver has no status.webhookPath yet (is Flux notification-controller running?)');
        return;
      }
      const outcome = await trigger.trigger(this.options.receiverBaseUrl(), { ...receiver, webhookPath }, body);
      if (outcome.ok) {
        metrics.receiversTriggered.inc();
        return;
      }
      if (outcome.reason === 'stopped') return;
      metrics.triggerFailures.inc({ reason: outcome.reason });
      // Flux refuses a call when the token changed under us: read Secret and Receiver afresh next time.
      if (outcome.reason === 'rejected') registry.invalidate(repository);
    } catch (err) {
      metrics.triggerFailures.inc({ reason: 'unavailable' });
      log.warn({ err: describeError(err) }, 'could not trigger the Receiver');
    }
  }

  /** The Receiver's webhook path; Flux sets it shortly after the Receiver is created, so wait a little. */
  private async webhookPath(repository: ManagedRepository): Promise<string | undefined> {
    if (repository.webhookPath) return repository.webhookPath;
    const { policy, stopSignal } = this.options;
    for (let attempt = 0; attempt < policy.attempts && !stopSignal.aborted; attempt++) {
      const receiver = await this.options.registry.receiverFor(repository);
      const path = await this.options.receivers.webhookPath(receiver);
      if (path) {
        repository.webhookPath = path;
        return path;
      }
      await sleep(backoffDelay(attempt, { minMs: policy.minDelayMs, maxMs: policy.maxDelayMs }), stopSignal);
    }
    return undefined;
  }
}
