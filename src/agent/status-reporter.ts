/**
 * Reports Flux state to the gateway in `status` frames (DESIGN.md "Cluster state, and the way
 * back to GitLab"): the managed sources and the Kustomizations and HelmReleases on them, and
 * nothing else.
 *
 * - On each connection, once the gateway has answered the first `subscribe` (`subscribed`) and
 *   the initial lists of the Flux objects have come in, the full set: one frame, or parts when it
 *   is larger than `hello.limits.maxFrameBytes` (65536 without it).
 * - Then changes: an object whose reported fields changed, one that appeared, or
 *   `{kind,namespace,name,deleted:true}` for one that went away or left the set (its source is
 *   no longer managed). The first change after a send starts a timer of at most a second; what
 *   changed until it fires goes out together, compared with what this connection last reported
 *   (so a change undone within the window sends nothing).
 * - At most `hello.limits.maxStatusObjects` objects (5000 without it). The full set takes them
 *   in a fixed order (GitRepositories, OCIRepositories, Kustomizations, HelmReleases; each by
 *   namespace and name); later changes keep the objects already reported and add new ones while
 *   there is room. While objects are left out every frame says `truncated: true`; the frame after
 *   the last one got in says `truncated: false`.
 */
import type { Logger } from 'pino';
import type { FluxKind } from '../protocol/kasgate-v1.js';
import type { AgentMetrics } from './health.js';
import type { SourceRegistry } from './sources.js';
import { checkReported, reportSource, reportWorkload, type ReportedObjectInput } from './status-objects.js';
import { packFrames } from './status-frames.js';
import type { Workload, WorkloadRegistry } from './workloads.js';

export const DEFAULT_MAX_FRAME_BYTES = 65_536;
export const DEFAULT_MAX_STATUS_OBJECTS = 5_000;

const RANK: Record<FluxKind, number> = { GitRepository: 0, OCIRepository: 1, Kustomization: 2, HelmRelease: 3 };
const KINDS = Object.keys(RANK) as FluxKind[];

interface Entry {
  readonly key: string;
  readonly kind: FluxKind;
  /** Sort key: kind rank, namespace, name. */
  readonly order: string;
  readonly json: string;
}

export interface StatusLimits {
  maxFrameBytes: number;
  maxStatusObjects: number;
}

interface Connection {
  readonly limits: StatusLimits;
  /** The full set has been sent: changes flow. */
  live: boolean;
  fullRequested: boolean;
  /** What this connection was told last, by key (JSON). */
  readonly reported: Map<string, string>;
  truncated: boolean;
}

export interface StatusReporterOptions {
  sources: SourceRegistry;
  workloads: WorkloadRegistry;
  logger: Logger;
  metrics: AgentMetrics;
  /** How long changes are gathered before they are sent (at most 1000 ms: the contract's second). */
  batchMs: number;
  /** Sends a serialized frame on the current connection; false when there is none. */
  send: (text: string) => boolean;
  /** Resolves once the initial lists of the Flux object watches started so far have come in (or failed once). */
  primed: () => Promise<void>;
}

export class StatusReporter {
  private readonly current = new Map<string, Entry>();
  private readonly invalid = new Set<string>();
  private readonly dirty = new Set<string>();
  private connection: Connection | undefined;
  private timer: NodeJS.Timeout | undefined;
  private readonly unsubscribe: (() => void)[];

  constructor(private readonly options: StatusReporterOptions) {
    const { sources, workloads } = options;
    for (const source of sources.all()) this.set(source.key, reportSource(source));
    for (const workload of workloads.all()) this.place(workload);
    this.unsubscribe = [
      sources.onChange((change) => {
        const { source } = change;
        const ref = { kind: source.kind, namespace: source.namespace, name: source.name };
        if (change.type === 'removed') {
          this.delete(source.key);
          for (const workload of workloads.on(ref)) this.delete(workload.key);
          return;
        }
        this.set(source.key, reportSource(source));
        if (change.type === 'added') for (const workload of workloads.on(ref)) this.place(workload);
      }),
      workloads.onChange((change) => {
        if (change.type === 'removed') this.delete(change.workload.key);
        else this.place(change.workload);
      }),
    ];
  }

  /** A new connection said hello: nothing is reported on it until its first `subscribed`. */
  connected(limits: Partial<StatusLimits> | undefined): void {
    this.clearBatch();
    this.connection = {
      limits: {
        maxFrameBytes: limits?.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES,
        maxStatusObjects: limits?.maxStatusObjects ?? DEFAULT_MAX_STATUS_OBJECTS,
      },
      live: false,
      fullRequested: false,
      reported: new Map(),
      truncated: false,
    };
  }

  /** The gateway answered a subscribe: the first time on a connection, the full set follows. */
  subscribed(): void {
    const connection = this.connection;
    if (!connection || connection.fullRequested) return;
    connection.fullRequested = true;
    void this.options.primed().then(() => {
      if (this.connection === connection) this.sendFull(connection);
    });
  }

  /** The gateway asks for the full set again (it lost one being assembled): sent now, on this connection. */
  resendFull(): void {
    const connection = this.connection;
    if (!connection?.live) return; // the first full set is still to come anyway
    this.clearBatch();
    this.sendFull(connection);
  }

  disconnected(): void {
    this.clearBatch();
    this.connection = undefined;
  }

  close(): void {
    for (const stop of this.unsubscribe) stop();
    this.disconnected();
  }

  /** The objects the agent would report now (before the limit), in report order: for tests and /readyz. */
  size(): number {
    return this.current.size;
  }

  private place(workload: Workload): void {
    const ref = workload.sourceRef;
    const onManaged = ref !== undefined && this.options.sources.get(ref.kind, ref.namespace, ref.name) !== undefined;
    if (onManaged) this.set(workload.key, reportWorkload(workload));
    else this.delete(workload.key);
  }

  private set(key: string, object: ReportedObjectInput): void {
    const check = checkReported(object);
    if (!check.ok) {
      if (!this.invalid.has(key)) this.options.logger.warn({ object: key, problem: check.problem }, 'not reporting an object the protocol cannot carry');
      this.invalid.add(key);
      return this.delete(key);
    }
    this.invalid.delete(key);
    const json = JSON.stringify(object);
    if (this.current.get(key)?.json === json) return;
    this.current.set(key, { key, kind: object.kind, order: `${RANK[object.kind]}/${object.namespace}/${object.name}`, json });
    this.touch(key);
  }

  private delete(key: string): void {
    if (this.current.delete(key)) this.touch(key);
  }

  private touch(key: string): void {
    const connection = this.connection;
    if (!connection?.live) return; // the full set will carry the state as it is then
    this.dirty.add(key);
    this.timer ??= setTimeout(() => {
      this.timer = undefined;
      if (this.connection === connection) this.flush(connection);
    }, this.options.batchMs);
  }

  private clearBatch(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.dirty.clear();
  }

  private sorted(entries: Iterable<Entry>): Entry[] {
    return [...entries].sort((a, b) => (a.order < b.order ? -1 : a.order > b.order ? 1 : 0));
  }

  private sendFull(connection: Connection): void {
    const taken = this.sorted(this.current.values()).slice(0, connection.limits.maxStatusObjects);
    const truncated = this.current.size > taken.length;
    connection.reported.clear();
    for (const entry of taken) connection.reported.set(entry.key, entry.json);
    connection.truncated = truncated;
    connection.live = true;
    this.dirty.clear();
    if (this.emit(connection, taken.map((e) => e.json), true, truncated)) {
      this.options.logger.info(
        { objects: taken.length, truncated, ...(truncated ? { known: this.current.size } : {}) },
        'reported the full Flux state',
      );
    }
  }

  private flush(connection: Connection): void {
    const { reported, limits } = connection;
    const changes: string[] = [];
    const additions: Entry[] = [];
    for (const key of this.dirty) {
      const entry = this.current.get(key);
      const was = reported.get(key);
      if (entry && was !== undefined) {
        if (entry.json !== was) {
          changes.push(entry.json);
          reported.set(key, entry.json);
        }
      } else if (entry) {
        additions.push(entry);
      } else if (was !== undefined) {
        changes.push(deletedObject(key));
        reported.delete(key);
      }
    }
    this.dirty.clear();
    let room = limits.maxStatusObjects - reported.size;
    if (room > 0) {
      // Objects left out before may fit now that others have gone.
      const candidates = connection.truncated ? [...this.current.values()].filter((e) => !reported.has(e.key)) : additions;
      for (const entry of this.sorted(candidates)) {
        if (room-- <= 0) break;
        changes.push(entry.json);
        reported.set(entry.key, entry.json);
      }
    }
    const truncated = this.current.size > reported.size;
    const flipped = truncated !== connection.truncated;
    connection.truncated = truncated;
    if (changes.length === 0 && !flipped) return;
    this.emit(connection, changes, false, truncated);
  }

  /** Packs and sends; false when the connection went away meanwhile. */
  private emit(connection: Connection, objects: string[], full: boolean, truncated: boolean): boolean {
    const { metrics, logger, send } = this.options;
    const packed = packFrames(objects, { full, truncated, maxFrameBytes: connection.limits.maxFrameBytes });
    if (packed.dropped > 0) {
      logger.warn({ dropped: packed.dropped, maxFrameBytes: connection.limits.maxFrameBytes }, 'objects too large for a status frame were left out');
    }
    // An empty change frame is sent only to say that truncation ended.
    const frames = packed.frames.length > 0 ? packed.frames : [`{"type":"status","full":false,"truncated":${truncated},"objects":[]}`];
    for (const frame of frames) {
      if (!send(frame)) return false;
      metrics.statusFrames.inc({ full: String(full) });
    }
    metrics.statusTruncated.set(truncated ? 1 : 0);
    const counts = new Map<FluxKind, number>(KINDS.map((kind) => [kind, 0]));
    for (const key of connection.reported.keys()) {
      const kind = key.slice(0, key.indexOf('/')) as FluxKind;
      counts.set(kind, (counts.get(kind) ?? 0) + 1);
    }
    for (const [kind, count] of counts) metrics.statusObjects.set({ kind }, count);
    return true;
  }
}

/** `{kind,namespace,name,deleted:true}` from a `Kind/namespace/name` key (Kubernetes names hold no slash). */
function deletedObject(key: string): string {
  const [kind, namespace, name] = key.split('/');
  return JSON.stringify({ kind, namespace, name, deleted: true });
}
