/**
 * The GitRepositories the agent manages: those whose URL is a project on our GitLab. Keeps
 * their project path and ref for matching pushes, and makes sure each has its Receiver.
 */
import type { KubernetesObject } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { z } from 'zod';
import { describeError } from './kube.js';
import { refMatches, type GitRepositoryRef } from './ref-match.js';
import type { ManagedReceiver, ReceiverManager } from './receivers.js';
import { projectPathFromRepoUrl, type GitLabLocation } from './repo-url.js';

const optionalText = z.string().optional();

const GitRepositoryShape = z.object({
  metadata: z.object({ name: z.string().min(1), namespace: z.string().min(1), uid: z.string().min(1) }),
  spec: z.object({
    url: z.string(),
    ref: z
      .object({ branch: optionalText, tag: optionalText, semver: optionalText, name: optionalText, commit: optionalText })
      .optional(),
  }),
});

export interface ManagedRepository {
  readonly key: string;
  readonly namespace: string;
  readonly name: string;
  readonly uid: string;
  projectPath: string;
  ref: GitRepositoryRef | undefined;
  receiver?: ManagedReceiver | undefined;
  /** Cached `status.webhookPath` of the Receiver. */
  webhookPath?: string | undefined;
  ensuring?: Promise<ManagedReceiver | undefined> | undefined;
  retryTimer?: NodeJS.Timeout | undefined;
}

export interface RepositoryRegistryOptions {
  receivers: ReceiverManager;
  gitlab: GitLabLocation;
  logger: Logger;
  retryMs: number;
  /** Called whenever the set of managed repositories (and so maybe of project paths) changes. */
  onChange: () => void;
}

const keyOf = (namespace: string, name: string): string => `${namespace}/${name}`;

export class RepositoryRegistry {
  private readonly repositories = new Map<string, ManagedRepository>();
  private closed = false;

  constructor(private readonly options: RepositoryRegistryOptions) {}

  get size(): number {
    return this.repositories.size;
  }

  all(): ManagedRepository[] {
    return [...this.repositories.values()];
  }

  /** The distinct project paths, sorted: what the agent subscribes to. */
  projectPaths(): string[] {
    return [...new Set(this.all().map((r) => r.projectPath))].sort();
  }

  /** The repositories that a push to `ref` of `projectPath` can affect. */
  matching(projectPath: string, ref: string, defaultBranch: string | null): ManagedRepository[] {
    const path = projectPath.toLowerCase();
    return this.all().filter((r) => r.projectPath === path && refMatches(r.ref, ref, defaultBranch));
  }

  upsert(object: KubernetesObject): void {
    const parsed = GitRepositoryShape.safeParse(object);
    if (!parsed.success) {
      const { name, namespace } = object.metadata ?? {};
      if (name && namespace) this.forget(keyOf(namespace, name));
      return;
    }
    const { metadata, spec } = parsed.data;
    const key = keyOf(metadata.namespace, metadata.name);
    const projectPath = projectPathFromRepoUrl(spec.url, this.options.gitlab);
    const existing = this.repositories.get(key);
    if (projectPath === undefined) {
      if (existing) this.options.logger.info({ gitRepository: key }, 'GitRepository no longer points at GitLab; not managed');
      this.forget(key);
      return;
    }
    if (existing && existing.uid === metadata.uid) {
      const changed = existing.projectPath !== projectPath;
      existing.projectPath = projectPath;
      existing.ref = spec.ref;
      if (changed) this.options.onChange();
      return;
    }
    this.forget(key);
    const repository: ManagedRepository = {
      key,
      namespace: metadata.namespace,
      name: metadata.name,
      uid: metadata.uid,
      projectPath,
      ref: spec.ref,
    };
    this.repositories.set(key, repository);
    this.options.logger.info({ gitRepository: key, project: projectPath }, 'managing GitRepository');
    void this.ensure(repository);
    this.options.onChange();
  }

  remove(object: KubernetesObject): void {
    const { name, namespace } = object.metadata ?? {};
    if (name && namespace) this.forget(keyOf(namespace, name));
  }

  /** The Receiver of a repository, applying it first if that has not happened (or failed). */
  async receiverFor(repository: ManagedRepository): Promise<ManagedReceiver> {
    const receiver = repository.receiver ?? (await (repository.ensuring ?? this.ensure(repository)));
    if (!receiver) throw new Error(`the Receiver of ${repository.key} could not be applied`);
    return receiver;
  }

  /** Drops what was cached about the Receiver (after Flux rejected a call), so it is read again. */
  invalidate(repository: ManagedRepository): void {
    repository.receiver = undefined;
    repository.webhookPath = undefined;
  }

  close(): void {
    this.closed = true;
    for (const key of this.repositories.keys()) this.forget(key);
  }

  private ensure(repository: ManagedRepository): Promise<ManagedReceiver | undefined> {
    clearTimeout(repository.retryTimer);
    const log = this.options.logger.child({ gitRepository: repository.key });
    const attempt = this.options.receivers
      .ensure({ namespace: repository.namespace, name: repository.name, uid: repository.uid })
      .then((receiver) => {
        repository.receiver = receiver;
        log.info({ receiver: receiver.name }, 'Receiver applied');
        return receiver;
      })
      .catch((err: unknown) => {
        log.warn({ err: describeError(err), retryInMs: this.options.retryMs }, 'could not apply the Receiver');
        if (!this.closed && this.repositories.get(repository.key) === repository) {
          repository.retryTimer = setTimeout(() => void this.ensure(repository), this.options.retryMs);
        }
        return undefined;
      })
      .finally(() => {
        if (repository.ensuring === attempt) repository.ensuring = undefined;
      });
    repository.ensuring = attempt;
    return attempt;
  }

  private forget(key: string): void {
    const repository = this.repositories.get(key);
    if (!repository) return;
    clearTimeout(repository.retryTimer);
    this.repositories.delete(key);
    // Its Secret and Receiver are owned by the GitRepository: Kubernetes collects them with it.
    if (!this.closed) this.options.onChange();
  }
}
