/**
 * Annotate mode (the default): a JSON merge patch of
 * `metadata.annotations["reconcile.fluxcd.io/requestedAt"]` on the source object. That is
 * fluxcd/pkg apis/meta `ReconcileRequestAnnotation`: "the value is interpreted as a token, and
 * any change in value SHOULD trigger a reconciliation". `flux reconcile source git` sets it to
 * `time.Now().Format(time.RFC3339Nano)` (fluxcd/flux2 cmd/flux/reconcile.go), and so does the
 * agent, with a value made unique: Flux acts only when the value changes, so two requests
 * within the same instant must not share one.
 *
 * It needs only `patch` on the source kinds: no Secret, no Receiver, no notification-controller.
 */
import {
  CustomObjectsApi,
  Observable,
  PatchStrategy,
  type ConfigurationOptions,
  type KubeConfig,
  type ObservableMiddleware,
  type RequestContext,
  type ResponseContext,
} from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { backoffDelay, sleep } from './backoff.js';
import { FIELD_MANAGER, GIT_REPOSITORY, OCI_REPOSITORY, describeError, statusOf, type CrdRef } from './kube.js';
import type { ReconcileOutcome, ReconcileRequest, Reconciler } from './reconciler.js';
import type { ManagedSource, SourceKind } from './sources.js';
import type { TriggerPolicy } from './trigger.js';

export const RECONCILE_REQUEST_ANNOTATION = 'reconcile.fluxcd.io/requestedAt';

const CRDS: Record<SourceKind, CrdRef> = { GitRepository: GIT_REPOSITORY, OCIRepository: OCI_REPOSITORY };

/**
 * RFC 3339 timestamps with nanoseconds (`2025-01-02T03:04:05.123456789Z`), strictly increasing
 * within the process: the wall clock to the millisecond, a monotonic clock below it, and one
 * nanosecond more than the last value whenever the clock has not moved on.
 */
export class RequestedAtClock {
  private last = 0n;

  constructor(private readonly nowNs: () => bigint = wallClockNs) {}

  next(): string {
    let ns = this.nowNs();
    if (ns <= this.last) ns = this.last + 1n;
    this.last = ns;
    return formatRfc3339Nano(ns);
  }
}

function wallClockNs(): bigint {
  return BigInt(Date.now()) * 1_000_000n + (process.hrtime.bigint() % 1_000_000n);
}

export function formatRfc3339Nano(ns: bigint): string {
  const seconds = new Date(Number(ns / 1_000_000_000n) * 1000).toISOString().slice(0, 19);
  return `${seconds}.${(ns % 1_000_000_000n).toString().padStart(9, '0')}Z`;
}

/** A retry can help: the API server or the path to it failed, or another writer got there first. */
const retryable = (status: number | undefined): boolean => status === undefined || status >= 500 || status === 409 || status === 429;

export class AnnotateReconciler implements Reconciler {
  readonly mode = 'annotate' as const;
  private readonly custom: CustomObjectsApi;
  private readonly clock = new RequestedAtClock();

  constructor(
    kc: KubeConfig,
    private readonly policy: TriggerPolicy,
    private readonly logger: Logger,
    private readonly stopSignal: AbortSignal,
  ) {
    this.custom = kc.makeApiClient(CustomObjectsApi);
  }

  async reconcile(source: ManagedSource, request: ReconcileRequest): Promise<ReconcileOutcome> {
    const log = this.logger.child({ source: source.key, eventId: request.eventId });
    const { group, version, plural } = CRDS[source.kind];
    for (let attempt = 1; ; attempt++) {
      if (this.stopSignal.aborted) return { ok: false, reason: 'stopped', attempts: attempt - 1 };
      const requestedAt = this.clock.next();
      let status: number | undefined;
      try {
        await this.custom.patchNamespacedCustomObject(
          {
            group,
            version,
            plural,
            namespace: source.namespace,
            name: source.name,
            body: { metadata: { annotations: { [RECONCILE_REQUEST_ANNOTATION]: requestedAt } } },
            fieldManager: FIELD_MANAGER,
          },
          mergePatchOptions(AbortSignal.any([this.stopSignal, AbortSignal.timeout(this.policy.timeoutMs)])),
        );
        log.info({ requestedAt, attempt }, 'reconcile requested');
        return { ok: true, attempts: attempt };
      } catch (err) {
        if (this.stopSignal.aborted) return { ok: false, reason: 'stopped', attempts: attempt };
        status = statusOf(err);
        if (status === 404) {
          log.info('the source is gone; nothing to reconcile');
          return { ok: false, reason: 'gone', attempts: attempt };
        }
        const hint = status === 403 ? ` (the agent needs the patch verb on ${plural}.${group})` : '';
        log.warn({ err: describeError(err) + hint, attempt }, 'could not annotate the source');
      }
      if (!retryable(status)) return { ok: false, reason: 'rejected', status, attempts: attempt };
      if (attempt >= this.policy.attempts) return { ok: false, reason: 'exhausted', status, attempts: attempt };
      await sleep(backoffDelay(attempt - 1, { minMs: this.policy.minDelayMs, maxMs: this.policy.maxDelayMs }), this.stopSignal);
    }
  }

  close(): void {}
}

/**
 * Request options for a JSON merge patch (`application/merge-patch+json`: the generated client
 * would pick JSON Patch) that gives up when `signal` aborts.
 */
function mergePatchOptions(signal: AbortSignal): ConfigurationOptions<ObservableMiddleware> {
  const middleware: ObservableMiddleware = {
    pre: (context: RequestContext) => {
      context.setHeaderParam('Content-Type', PatchStrategy.MergePatch);
      context.setSignal(signal);
      return new Observable(Promise.resolve(context));
    },
    post: (response: ResponseContext) => new Observable(Promise.resolve(response)),
  };
  return { middleware: [middleware], middlewareMergeStrategy: 'append' };
}
