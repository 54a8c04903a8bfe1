/**
 * Flux's credentials from the gateway (`credentials` frames: a GitLab deploy token, DESIGN.md
 * "GitLab API: agent configuration, access and Flux's tokens"), written as a Secret named
 * `secretName` in each namespace the frame lists, by server-side apply (field manager
 * `kasgate-agent`), labelled `app.kubernetes.io/managed-by: kasgate`.
 *
 * What Flux reads from the Secret:
 * - `basic-auth`, for a GitRepository over HTTPS: `.data.username` and `.data.password`
 *   (source-controller docs/spec/v1/gitrepositories.md, "Secret reference" → "Basic access
 *   authentication", whose example is `type: Opaque`; GitLab takes a deploy token as basic auth);
 * - `dockerconfigjson`, for an OCIRepository: the `imagePullSecrets` format
 *   (docs/spec/v1/ocirepositories.md, "Secret reference"), i.e. `type: kubernetes.io/dockerconfigjson`
 *   with `.data[".dockerconfigjson"]` = `{"auths":{"<registry>":{"username","password","auth"}}}`.
 *
 * Answers: `credentials_applied {id}` once every namespace has it; `credentials_failed {id,
 * message}` otherwise (no rights in a namespace, a Secret of that name that kasgate does not
 * manage, ...), and the failed namespaces are tried again with backoff until they succeed, a
 * newer frame for the same Secret takes over, or the credentials expire.
 *
 * Rules:
 * - A Secret of that name without the kasgate label is never taken over.
 * - The same id again is harmless (the apply is idempotent) and answered again.
 * - A newer credential wins: a frame for a Secret that a newer frame (by arrival) targets drops
 *   that namespace; and a Secret already holding other kasgate credentials that expire later is
 *   left as it is (an old token re-sent after a rotation must not roll the Secret back). Both
 *   count as done for the older frame.
 * - Neither the username nor the password is ever logged or put in a message (the API server's
 *   own error texts are scrubbed of them too).
 */
import { ApiException, CoreV1Api, KubernetesObjectApi, PatchStrategy, type KubernetesObject, type V1Secret } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import type { CredentialsAppliedFrame, CredentialsFailedFrame, CredentialsFrame } from '../protocol/kasgate-v1.js';
import { backoffDelay, type BackoffPolicy } from './backoff.js';
import type { AgentMetrics } from './health.js';
import { FIELD_MANAGER, describeError, statusOf } from './kube.js';
import { MANAGED_BY_LABEL, MANAGED_BY_VALUE } from './receivers.js';
import { cutText } from './status-objects.js';

export const CREDENTIALS_ID_ANNOTATION = 'kasgate.io/credentials-id';
export const EXPIRES_AT_ANNOTATION = 'kasgate.io/expires-at';

const SECRET_TYPE: Record<CredentialsFrame['kind'], string> = {
  'basic-auth': 'Opaque',
  dockerconfigjson: 'kubernetes.io/dockerconfigjson',
};

const MAX_MESSAGE = 1024;

type FailureReason = 'forbidden' | 'foreign' | 'invalid' | 'error';

class CredentialsError extends Error {
  constructor(
    message: string,
    readonly reason: FailureReason,
  ) {
    super(message);
  }
}

interface Job {
  frame: CredentialsFrame;
  /** Namespaces still to write. */
  readonly pending: Set<string>;
  failures: number;
  running: boolean;
  timer?: NodeJS.Timeout | undefined;
}

export interface CredentialsWriterOptions {
  core: CoreV1Api;
  objects: KubernetesObjectApi;
  logger: Logger;
  metrics: AgentMetrics;
  /** Sends an answer on the current connection; false when there is none (the gateway sends the frame again later). */
  send: (frame: CredentialsAppliedFrame | CredentialsFailedFrame) => boolean;
  retry: BackoffPolicy;
  now?: () => number;
}

const b64 = (text: string): string => Buffer.from(text, 'utf8').toString('base64');

/** The Secret's `data` for a frame (base64 values, as the API takes them). */
export function secretData(frame: CredentialsFrame): Record<string, string> {
  if (frame.kind === 'basic-auth') return { username: b64(frame.username), password: b64(frame.password) };
  const auth = b64(`${frame.username}:${frame.password}`);
  const config = { auths: { [frame.registry as string]: { username: frame.username, password: frame.password, auth } } };
  return { '.dockerconfigjson': b64(JSON.stringify(config)) };
}

export class CredentialsWriter {
  private readonly jobs = new Map<string, Job>();
  /** `namespace/secretName` → the newest job that targets it. */
  private readonly latest = new Map<string, Job>();
  private readonly running = new Set<Promise<void>>();
  private closed = false;

  constructor(private readonly options: CredentialsWriterOptions) {}

  handle(frame: CredentialsFrame): void {
    if (this.closed) return;
    const log = this.options.logger;
    const summary = { id: frame.id, secretName: frame.secretName, namespaces: frame.namespaces, kind: frame.kind, expiresAt: frame.expiresAt };
    const existing = this.jobs.get(frame.id);
    if (existing) {
      // Sent again: try now rather than at the next backoff step.
      log.info(summary, 'credentials received again');
      if (!existing.running) {
        clearTimeout(existing.timer);
        this.run(existing);
      }
      return;
    }
    log.info({ ...summary, registry: frame.registry }, 'credentials received');
    if (frame.kind === 'dockerconfigjson' && (frame.registry === null || frame.registry.trim() === '')) {
      this.options.metrics.credentialsFailures.inc({ reason: 'invalid' });
      this.answer({ type: 'credentials_failed', id: frame.id, message: 'a dockerconfigjson credential needs a registry host; nothing was written' });
      return;
    }
    const job: Job = { frame, pending: new Set(frame.namespaces), failures: 0, running: false };
    this.jobs.set(frame.id, job);
    for (const namespace of job.pending) this.latest.set(target(namespace, frame.secretName), job);
    this.run(job);
  }

  /** Waits for the writes under way. */
  async idle(): Promise<void> {
    while (this.running.size > 0) await Promise.allSettled(this.running);
  }

  close(): void {
    this.closed = true;
    for (const job of this.jobs.values()) clearTimeout(job.timer);
    this.jobs.clear();
    this.latest.clear();
  }

  private run(job: Job): void {
    job.running = true;
    job.timer = undefined;
    const work = this.attempt(job).finally(() => {
      job.running = false;
      this.running.delete(work);
    });
    this.running.add(work);
  }

  private async attempt(job: Job): Promise<void> {
    const { frame } = job;
    const log = this.options.logger.child({ id: frame.id, secretName: frame.secretName });
    for (const namespace of job.pending) {
      if (this.latest.get(target(namespace, frame.secretName)) !== job) {
        log.info({ namespace }, 'newer credentials took over this Secret; not writing these');
        job.pending.delete(namespace);
      }
    }
    const results = await Promise.all(
      [...job.pending].map(async (namespace) => {
        try {
          const outcome = await this.write(frame, namespace);
          job.pending.delete(namespace);
          log.info({ namespace, outcome }, outcome === 'kept' ? 'the Secret holds newer credentials; kept them' : 'Secret written');
          return undefined;
        } catch (err) {
          const failure = err instanceof CredentialsError ? err : new CredentialsError(describeError(err), 'error');
          const message = scrub(failure.message, frame);
          this.options.metrics.credentialsFailures.inc({ reason: failure.reason });
          log.warn({ namespace, reason: failure.reason, err: message }, 'could not write the Secret');
          return `${namespace}: ${message}`;
        }
      }),
    );
    if (this.closed) return;
    const failures = results.filter((r): r is string => r !== undefined);
    if (job.pending.size === 0) {
      this.forget(job);
      this.options.metrics.credentialsApplied.inc();
      log.info({ namespaces: frame.namespaces }, 'credentials applied');
      this.answer({ type: 'credentials_applied', id: frame.id });
      return;
    }
    this.answer({ type: 'credentials_failed', id: frame.id, message: cutText(failures.join('; '), MAX_MESSAGE) });
    const now = (this.options.now ?? Date.now)();
    const expires = Date.parse(frame.expiresAt);
    if (!Number.isNaN(expires) && expires <= now) {
      log.warn('these credentials have expired; not trying again');
      this.forget(job);
      return;
    }
    const delay = backoffDelay(job.failures++, this.options.retry);
    log.info({ retryInMs: delay, namespaces: [...job.pending] }, 'trying the failed namespaces again later');
    job.timer = setTimeout(() => {
      if (!this.closed && this.jobs.get(frame.id) === job) this.run(job);
    }, delay);
  }

  private forget(job: Job): void {
    clearTimeout(job.timer);
    if (this.jobs.get(job.frame.id) === job) this.jobs.delete(job.frame.id);
    for (const [key, owner] of this.latest) if (owner === job) this.latest.delete(key);
  }

  private answer(frame: CredentialsAppliedFrame | CredentialsFailedFrame): void {
    if (!this.options.send(frame)) this.options.logger.debug({ id: frame.id, type: frame.type }, 'not connected; the gateway sends the credentials again');
  }

  /** Writes the Secret in one namespace: 'written', or 'kept' when it already holds newer kasgate credentials. */
  private async write(frame: CredentialsFrame, namespace: string): Promise<'written' | 'kept'> {
    const name = frame.secretName;
    const type = SECRET_TYPE[frame.kind];
    const where = `Secret ${namespace}/${name}`;
    let existing: V1Secret | undefined;
    try {
      existing = await this.options.core.readNamespacedSecret({ name, namespace });
    } catch (err) {
      if (statusOf(err) !== 404) throw kubeFailure(err, namespace, 'get');
    }
    if (existing) {
      if (existing.metadata?.labels?.[MANAGED_BY_LABEL] !== MANAGED_BY_VALUE) {
        throw new CredentialsError(`${where} exists and is not managed by kasgate (no label ${MANAGED_BY_LABEL}=${MANAGED_BY_VALUE}); not taking it over`, 'foreign');
      }
      const annotations = existing.metadata?.annotations ?? {};
      const theirs = Date.parse(annotations[EXPIRES_AT_ANNOTATION] ?? '');
      const ours = Date.parse(frame.expiresAt);
      if (annotations[CREDENTIALS_ID_ANNOTATION] !== frame.id && !Number.isNaN(theirs) && !Number.isNaN(ours) && theirs > ours) return 'kept';
      if ((existing.type ?? 'Opaque') !== type) {
        throw new CredentialsError(`${where} has type ${existing.type ?? 'Opaque'}, not ${type} (a Secret's type cannot change); delete it and the agent writes it again`, 'invalid');
      }
    }
    const secret = {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: {
        name,
        namespace,
        labels: { [MANAGED_BY_LABEL]: MANAGED_BY_VALUE },
        annotations: { [CREDENTIALS_ID_ANNOTATION]: frame.id, [EXPIRES_AT_ANNOTATION]: frame.expiresAt },
      },
      type,
      data: secretData(frame),
    };
    try {
      // Forced: the Secret is ours (labelled), and someone's `kubectl edit` must not keep Flux on an old token.
      await this.options.objects.patch(secret as KubernetesObject, undefined, undefined, FIELD_MANAGER, true, PatchStrategy.ServerSideApply);
    } catch (err) {
      throw kubeFailure(err, namespace, existing ? 'patch' : 'create');
    }
    return 'written';
  }
}

const target = (namespace: string, name: string): string => `${namespace}/${name}`;

function kubeFailure(err: unknown, namespace: string, verb: string): CredentialsError {
  const status = statusOf(err);
  if (status === 403) {
    return new CredentialsError(
      `forbidden: the agent may not ${verb} Secrets in namespace ${namespace} (grant it get, create and patch on secrets there with a Role and RoleBinding: deploy/agent/README.md)`,
      'forbidden',
    );
  }
  return new CredentialsError(err instanceof ApiException || err instanceof Error ? describeError(err) : String(err), 'error');
}

/** The text with every form of the frame's secrets (plain, base64, the docker config) replaced. */
function scrub(text: string, frame: CredentialsFrame): string {
  const secrets = [frame.password, b64(frame.password), `${frame.username}:${frame.password}`, b64(`${frame.username}:${frame.password}`)];
  if (frame.kind === 'dockerconfigjson' && frame.registry) secrets.push(...Object.values(secretData(frame)));
  let out = text;
  for (const secret of secrets) if (secret.length >= 4) out = out.split(secret).join('[redacted]');
  return out;
}
