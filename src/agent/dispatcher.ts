/**
 * Turns the gateway's events into reconcile requests: picks the sources an event can change,
 * asks Flux to reconcile them concurrently (in the trigger mode in force), and acks the event once
 * they have all finished and every earlier event has finished too.
 *
 * | event                          | sources                                                        |
 * | ------------------------------ | -------------------------------------------------------------- |
 * | `push` of project P, ref R     | GitRepositories of P whose `spec.ref` R can change              |
 * | `artifact` (pipeline) of P     | OCIRepositories whose repository is P or under it               |
 * | `artifact` (registry) repo, tag| OCIRepositories of exactly that repository whose ref the tag can change |
 * | `resync`                       | every managed source of both kinds                             |
 */
import type { Logger } from 'pino';
import type { ArtifactFrame, PushFrame } from '../protocol/kasgate-v1.js';
import type { EventCursor } from './event-cursor.js';
import type { AgentMetrics } from './health.js';
import type { ReconcileRequest, Reconciler } from './reconciler.js';
import type { ManagedSource, SourceRegistry } from './sources.js';

export interface DispatcherOptions {
  registry: SourceRegistry;
  reconciler: Reconciler;
  cursor: EventCursor;
  metrics: AgentMetrics;
  logger: Logger;
  /** Sends an ack; the resume point covers it when the socket is down. */
  ack: (eventId: string) => void;
}

export class EventDispatcher {
  private readonly running = new Set<Promise<void>>();

  constructor(private readonly options: DispatcherOptions) {}

  handlePush(frame: PushFrame): void {
    if (!this.take(frame.eventId)) return;
    this.options.metrics.eventsReceived.inc({ type: 'push' });
    const sources = this.options.registry.forPush(frame.project.path, frame.ref);
    this.options.logger.info(
      { eventId: frame.eventId, project: frame.project.path, ref: frame.ref, sources: sources.map((s) => s.key) },
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
    this.dispatch(frame.eventId, sources, body);
  }

  handleArtifact(frame: ArtifactFrame): void {
    if (!this.take(frame.eventId)) return;
    this.options.metrics.eventsReceived.inc({ type: 'artifact' });
    const { registry, logger } = this.options;
    const sources =
      frame.source === 'pipeline' ? registry.forPipeline(frame.project.path) : registry.forRegistryTag(frame.repository, frame.tag);
    const detail =
      frame.source === 'pipeline'
        ? { ref: frame.ref, sha: frame.sha, pipelineId: frame.pipelineId }
        : { repository: frame.repository, tag: frame.tag, digest: frame.digest };
    logger.info(
      { eventId: frame.eventId, from: frame.source, project: frame.project.path, ...detail, sources: sources.map((s) => s.key) },
      'artifact received',
    );
    const body = JSON.stringify({
      source: 'kasgate',
      eventId: frame.eventId,
      artifact: frame.source,
      project: frame.project.path,
      ...detail,
      receivedAt: frame.receivedAt,
    });
    this.dispatch(frame.eventId, sources, body);
  }

  /** Events may have been missed: reconcile everything the agent manages, once. */
  handleResync(reason: string): void {
    const sources = this.options.registry.all();
    this.options.logger.warn({ reason, sources: sources.length }, 'resync: reconciling every managed source');
    const body = JSON.stringify({ source: 'kasgate', resync: reason });
    this.track(this.reconcileAll(sources, { body }));
  }

  /** Waits for the requests under way (bounded by the reconciler's stop signal, which cuts retries short). */
  async idle(): Promise<void> {
    while (this.running.size > 0) await Promise.allSettled(this.running);
  }

  private take(eventId: string): boolean {
    if (this.options.cursor.begin(eventId)) return true;
    this.options.logger.debug({ eventId }, 'skipping a redelivered event');
    return false;
  }

  private dispatch(eventId: string, sources: ManagedSource[], body: string): void {
    this.track(
      this.reconcileAll(sources, { eventId, body }).then(() => {
        const ackId = this.options.cursor.finish(eventId);
        if (ackId !== undefined) this.options.ack(ackId);
      }),
    );
  }

  private async reconcileAll(sources: ManagedSource[], request: ReconcileRequest): Promise<void> {
    const { reconciler, metrics } = this.options;
    await Promise.all(
      sources.map(async (source) => {
        const outcome = await reconciler.reconcile(source, request);
        if (outcome.ok) metrics.reconcilesRequested.inc({ kind: source.kind, mode: reconciler.mode });
        else if (outcome.reason !== 'gone' && outcome.reason !== 'stopped') metrics.triggerFailures.inc({ reason: outcome.reason });
      }),
    );
  }

  private track(work: Promise<void>): void {
    this.running.add(work);
    void work.finally(() => this.running.delete(work));
  }
}
