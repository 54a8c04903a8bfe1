/**
 * Flux objects as an agent reports them in `status` frames (DESIGN.md "Cluster state"), and a
 * reporter that keeps an agent's set and sends it as a real agent would: the whole set (split
 * into parts when asked), then changes. Revisions are in Flux v1's format, `<branch>@sha1:<sha>`.
 */
import { randomBytes } from 'node:crypto';
import type { StatusFrameInput } from '../../src/protocol/kasgate-v1.js';
import type { TestAgent } from './agent-client.js';

export type ObjectInput = Extract<StatusFrameInput['objects'][number], { ready: string }>;

export const newSha = () => randomBytes(20).toString('hex');

export const keyOf = (o: { kind: string; namespace: string; name: string }) => `${o.kind}/${o.namespace}/${o.name}`;

/** A GitRepository the agent matched to `project`; `sha` is the commit its artifact holds. */
export function gitRepository(
  name: string,
  options: { project: string; ref?: Record<string, string> | null; sha?: string; namespace?: string; ready?: 'True' | 'False' | 'Unknown' },
): ObjectInput {
  const ref = options.ref === undefined ? { branch: 'main' } : options.ref;
  const refName = ref?.branch ?? ref?.tag ?? ref?.name ?? 'master';
  return {
    kind: 'GitRepository',
    namespace: options.namespace ?? 'flux-system',
    name,
    ready: options.ready ?? (options.sha ? 'True' : 'Unknown'),
    reason: options.sha ? 'Succeeded' : 'Progressing',
    message: options.sha ? `stored artifact for revision '${refName}@sha1:${options.sha}'` : 'reconciliation in progress',
    revision: options.sha ? `${refName}@sha1:${options.sha}` : null,
    url: `https://gitlab.example.com/${options.project}.git`,
    project: options.project,
    ref,
    updatedAt: new Date().toISOString(),
  };
}

/** A Kustomization on `source`: Ready True at `sha` (applied), False at `sha` (failed), or still Unknown. */
export function kustomization(
  name: string,
  options: {
    source: ObjectInput;
    applied?: string | null;
    attempted?: string | null;
    ready?: 'True' | 'False' | 'Unknown';
    reason?: string;
    message?: string;
    namespace?: string;
  },
): ObjectInput {
  const branch = options.source.ref?.branch ?? 'main';
  const rev = (sha: string | null | undefined) => (sha ? `${branch}@sha1:${sha}` : null);
  const ready = options.ready ?? (options.applied ? 'True' : 'Unknown');
  return {
    kind: 'Kustomization',
    namespace: options.namespace ?? 'flux-system',
    name,
    ready,
    reason: options.reason ?? (ready === 'True' ? 'ReconciliationSucceeded' : ready === 'False' ? 'ReconciliationFailed' : 'Progressing'),
    message:
      options.message ?? (ready === 'True' ? `Applied revision: ${rev(options.applied)}` : ready === 'False' ? 'apply failed' : 'Reconciliation in progress'),
    revision: rev(options.applied),
    attemptedRevision: rev(options.attempted ?? options.applied),
    sourceRef: { kind: options.source.kind, namespace: options.source.namespace, name: options.source.name },
    updatedAt: new Date().toISOString(),
  };
}

/** Keeps an agent's objects and reports them like the in-cluster agent. */
export class StatusReporter {
  readonly objects = new Map<string, ObjectInput>();

  constructor(readonly agent: TestAgent) {}

  /** Sends the whole set; `parts` > 1 splits it (part counts from 1). */
  full(options: { parts?: number; truncated?: boolean } = {}): void {
    const all = [...this.objects.values()];
    const parts = options.parts ?? 1;
    const size = Math.ceil(all.length / parts) || 1;
    for (let i = 0; i < parts; i++) {
      this.agent.send({
        type: 'status',
        full: true,
        objects: all.slice(i * size, (i + 1) * size),
        ...(parts > 1 ? { part: i + 1, parts } : {}),
        ...(options.truncated === undefined ? {} : { truncated: options.truncated }),
      });
    }
  }

  /** Records and sends changed objects. */
  update(...objects: ObjectInput[]): void {
    for (const o of objects) this.objects.set(keyOf(o), o);
    this.agent.send({ type: 'status', full: false, objects });
  }

  /** Records objects without sending (for the next full set). */
  put(...objects: ObjectInput[]): this {
    for (const o of objects) this.objects.set(keyOf(o), o);
    return this;
  }

  remove(o: ObjectInput): void {
    this.objects.delete(keyOf(o));
    this.agent.send({ type: 'status', full: false, objects: [{ kind: o.kind, namespace: o.namespace, name: o.name, deleted: true }] });
  }
}
