/**
 * How the agent asks Flux to reconcile a source now: the contract both trigger modes
 * (`KASGATE_TRIGGER_MODE=annotate|receiver`) fulfil.
 */
import type { ManagedSource } from './sources.js';

export const TRIGGER_MODES = ['annotate', 'receiver'] as const;
export type TriggerMode = (typeof TRIGGER_MODES)[number];

export interface ReconcileRequest {
  /** The event that asked for it; absent for a resync. */
  readonly eventId?: string | undefined;
  /** The JSON body a Receiver gets in receiver mode (Flux ignores it; it helps whoever reads Receiver logs). */
  readonly body: string;
}

export type FailureReason =
  /** The API server or the Receiver refused it for good (a 4xx other than a conflict). */
  | 'rejected'
  /** Retries used up on 5xx answers, conflicts or network errors. */
  | 'exhausted'
  /** The Receiver (receiver mode) could not be applied or has no webhook path yet. */
  | 'unavailable';

export type ReconcileOutcome =
  | { ok: true; attempts: number }
  | { ok: false; reason: FailureReason; attempts: number; status?: number | undefined }
  /** The source went away meanwhile (404), or the agent is stopping: nothing to count. */
  | { ok: false; reason: 'gone' | 'stopped'; attempts: number };

export interface Reconciler {
  readonly mode: TriggerMode;
  /**
   * Asks Flux to reconcile `source` once for `request`, retrying by itself within its bounds;
   * never throws. Resolves when it is done, one way or the other.
   */
  reconcile(source: ManagedSource, request: ReconcileRequest): Promise<ReconcileOutcome>;
  /** Stops background work (receiver mode keeps Receivers applied as sources come). */
  close(): void;
}
