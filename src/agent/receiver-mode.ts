/**
 * Receiver mode (`KASGATE_TRIGGER_MODE=receiver`, as kas's agentk does it): a Secret and a
 * `generic-hmac` Receiver per managed source, applied as sources come, and a signed POST to the
 * Receiver's `status.webhookPath` per request.
 *
 * When the Receiver refuses a call (a 4xx: its token was rotated, or Flux gave it another path),
 * the agent reads the Secret and the Receiver again and retries that same request, a bounded
 * number of times, so that a rotation never drops an event.
 */
import type { Logger } from 'pino';
import { backoffDelay, sleep } from './backoff.js';
import { describeError } from './kube.js';
import type { ReconcileOutcome, ReconcileRequest, Reconciler } from './reconciler.js';
import type { ManagedReceiver, ReceiverManager } from './receivers.js';
import type { ManagedSource, SourceRegistry } from './sources.js';
import type { ReceiverTrigger, TriggerPolicy } from './trigger.js';

interface ReceiverState {
  readonly uid: string;
  receiver?: ManagedReceiver | undefined;
  /** Cached `status.webhookPath` of the Receiver. */
  webhookPath?: string | undefined;
  ensuring?: Promise<ManagedReceiver | undefined> | undefined;
  retryTimer?: NodeJS.Timeout | undefined;
}

export interface ReceiverReconcilerOptions {
  registry: SourceRegistry;
  receivers: ReceiverManager;
  trigger: ReceiverTrigger;
  policy: TriggerPolicy;
  logger: Logger;
  stopSignal: AbortSignal;
  /** How long to wait before applying a Receiver again after a failure. */
  retryMs: number;
  /** The receiver base URL in force now (hello and config frames can change it). */
  receiverBaseUrl: () => string;
}

export class ReceiverReconciler implements Reconciler {
  readonly mode = 'receiver' as const;
  private readonly states = new Map<string, ReceiverState>();
  private readonly unsubscribe: () => void;
  private closed = false;

  constructor(private readonly options: ReceiverReconcilerOptions) {
    for (const source of options.registry.all()) this.ensure(source, this.stateFor(source));
    this.unsubscribe = options.registry.onChange((change) => {
      if (change.type === 'removed') return this.forget(change.source);
      // A new source (or a new object under a known name) gets its Receiver at once, so that
      // Flux has set its webhook path by the time the first event comes.
      if (change.type === 'added') this.ensure(change.source, this.stateFor(change.source));
    });
  }

  async reconcile(source: ManagedSource, request: ReconcileRequest): Promise<ReconcileOutcome> {
    const { trigger, policy, stopSignal, logger } = this.options;
    const log = logger.child({ source: source.key, eventId: request.eventId });
    let attempts = 0;
    for (let round = 1; ; round++) {
      if (stopSignal.aborted) return { ok: false, reason: 'stopped', attempts };
      const state = this.stateFor(source);
      const receiver = state.receiver ?? (await (state.ensuring ?? this.ensure(source, state)));
      if (!receiver) {
        log.warn('the Receiver could not be applied; not triggered');
        return { ok: false, reason: 'unavailable', attempts };
      }
      const webhookPath = await this.webhookPath(receiver, state);
      if (!webhookPath) {
        if (stopSignal.aborted) return { ok: false, reason: 'stopped', attempts };
        log.warn({ receiver: receiver.name }, 'the Receiver has no status.webhookPath yet (is Flux notification-controller running?)');
        return { ok: false, reason: 'unavailable', attempts };
      }
      const outcome = await trigger.trigger(this.options.receiverBaseUrl(), { ...receiver, webhookPath }, request.body);
      attempts += outcome.attempts;
      if (outcome.ok) return { ok: true, attempts };
      if (outcome.reason !== 'rejected') return { ok: false, reason: outcome.reason, attempts, status: outcome.status };
      // Flux refused the token or does not know the path: read the Secret and the Receiver again.
      this.invalidate(state);
      if (round >= policy.attempts) return { ok: false, reason: 'rejected', attempts, status: outcome.status };
      log.info({ status: outcome.status, round }, 'the Receiver refused the call; reading its Secret and path again and retrying');
      await sleep(backoffDelay(round - 1, { minMs: policy.minDelayMs, maxMs: policy.maxDelayMs }), stopSignal);
    }
  }

  close(): void {
    this.closed = true;
    this.unsubscribe();
    for (const state of this.states.values()) clearTimeout(state.retryTimer);
    this.states.clear();
  }

  private stateFor(source: ManagedSource): ReceiverState {
    const existing = this.states.get(source.key);
    if (existing && existing.uid === source.uid) return existing;
    if (existing) clearTimeout(existing.retryTimer);
    const state: ReceiverState = { uid: source.uid };
    this.states.set(source.key, state);
    return state;
  }

  private forget(source: ManagedSource): void {
    const state = this.states.get(source.key);
    if (!state || state.uid !== source.uid) return;
    clearTimeout(state.retryTimer);
    // The Secret and Receiver are owned by the source: Kubernetes collects them with it.
    this.states.delete(source.key);
  }

  private invalidate(state: ReceiverState): void {
    state.receiver = undefined;
    state.webhookPath = undefined;
  }

  /** Applies the Secret and Receiver (again); on failure, tries again after retryMs while the source is managed. */
  private ensure(source: ManagedSource, state: ReceiverState): Promise<ManagedReceiver | undefined> {
    clearTimeout(state.retryTimer);
    const log = this.options.logger.child({ source: source.key });
    const attempt = this.options.receivers
      .ensure({ kind: source.kind, namespace: source.namespace, name: source.name, uid: source.uid })
      .then((receiver) => {
        state.receiver = receiver;
        log.info({ receiver: receiver.name }, 'Receiver applied');
        return receiver;
      })
      .catch((err: unknown) => {
        log.warn({ err: describeError(err), retryInMs: this.options.retryMs }, 'could not apply the Receiver');
        if (!this.closed && this.states.get(source.key) === state) {
          state.retryTimer = setTimeout(() => void this.ensure(source, state), this.options.retryMs);
        }
        return undefined;
      })
      .finally(() => {
        if (state.ensuring === attempt) state.ensuring = undefined;
      });
    state.ensuring = attempt;
    return attempt;
  }

  /** The Receiver's webhook path; Flux sets it shortly after the Receiver is applied, so wait a little. */
  private async webhookPath(receiver: ManagedReceiver, state: ReceiverState): Promise<string | undefined> {
    if (state.webhookPath) return state.webhookPath;
    const { policy, stopSignal, receivers } = this.options;
    for (let attempt = 0; attempt < policy.attempts && !stopSignal.aborted; attempt++) {
      try {
        const path = await receivers.webhookPath(receiver);
        if (path) {
          state.webhookPath = path;
          return path;
        }
      } catch (err) {
        this.options.logger.warn({ receiver: `${receiver.namespace}/${receiver.name}`, err: describeError(err) }, 'could not read the Receiver');
      }
      await sleep(backoffDelay(attempt, { minMs: policy.minDelayMs, maxMs: policy.maxDelayMs }), stopSignal);
    }
    return undefined;
  }
}
