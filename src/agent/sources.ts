/**
 * The Flux sources the agent manages: GitRepositories whose URL is a project on our GitLab, and
 * OCIRepositories whose URL is a repository on our container registry. For each it keeps what
 * matching needs (kind, project or repository, ref) and the object as last seen, and tells
 * listeners when one is added, updated or removed (the subscription, the receiver-mode triggers
 * and status reporting all follow it).
 */
import type { KubernetesObject } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { z } from 'zod';
import { gitRefMatches, ociTagMatches, type GitRepositoryRef, type OciRepositoryRef } from './ref-match.js';
import {
  projectPathFromRepoUrl,
  repositoryFromOciUrl,
  repositoryProjectCandidates,
  type GitLabLocation,
  type RegistryHost,
} from './repo-url.js';

export const SOURCE_KINDS = ['GitRepository', 'OCIRepository'] as const;
export type SourceKind = (typeof SOURCE_KINDS)[number];

interface SourceBase {
  readonly kind: SourceKind;
  /** `<Kind>/<namespace>/<name>`: unique across kinds. */
  readonly key: string;
  readonly namespace: string;
  readonly name: string;
  readonly uid: string;
  /** `spec.url` as Flux has it. */
  readonly url: string;
  readonly suspended: boolean;
  /** The object as the watch last delivered it, status included. */
  readonly object: KubernetesObject;
}

export interface ManagedGitRepository extends SourceBase {
  readonly kind: 'GitRepository';
  /** The GitLab project path (lower-case) the URL points at. */
  readonly project: string;
  readonly ref: GitRepositoryRef | undefined;
}

export interface ManagedOciRepository extends SourceBase {
  readonly kind: 'OCIRepository';
  /** The registry repository path (lower-case): `<project path>` or `<project path>/<image name>`. */
  readonly repository: string;
  readonly ref: OciRepositoryRef | undefined;
}

export type ManagedSource = ManagedGitRepository | ManagedOciRepository;

export type SourceChange =
  | { type: 'added'; source: ManagedSource }
  /** Any change the watch saw: spec, status, annotations (the agent's own patches included). */
  | { type: 'updated'; source: ManagedSource; previous: ManagedSource }
  | { type: 'removed'; source: ManagedSource };

export type SourceListener = (change: SourceChange) => void;

const optionalText = z.string().optional();

const Metadata = z.object({ name: z.string().min(1), namespace: z.string().min(1), uid: z.string().min(1) });

const GitRepositoryShape = z.object({
  metadata: Metadata,
  spec: z.object({
    url: z.string(),
    suspend: z.boolean().optional(),
    ref: z
      .object({ branch: optionalText, tag: optionalText, semver: optionalText, name: optionalText, commit: optionalText })
      .optional(),
  }),
});

const OciRepositoryShape = z.object({
  metadata: Metadata,
  spec: z.object({
    url: z.string(),
    suspend: z.boolean().optional(),
    ref: z.object({ digest: optionalText, semver: optionalText, semverFilter: optionalText, tag: optionalText }).optional(),
  }),
});

export const sourceKey = (kind: SourceKind, namespace: string, name: string): string => `${kind}/${namespace}/${name}`;

export interface SourceRegistryOptions {
  gitlab: GitLabLocation;
  /** `KASGATE_REGISTRY_HOST`; without it no OCIRepository is managed. */
  registryHost: RegistryHost | undefined;
  logger: Logger;
}

export class SourceRegistry {
  private readonly sources = new Map<string, ManagedSource>();
  private readonly listeners = new Set<SourceListener>();

  constructor(private readonly options: SourceRegistryOptions) {}

  /** Calls `listener` on every change from now on; returns the function that stops it. */
  onChange(listener: SourceListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  get size(): number {
    return this.sources.size;
  }

  count(kind: SourceKind): number {
    let n = 0;
    for (const source of this.sources.values()) if (source.kind === kind) n++;
    return n;
  }

  all(): ManagedSource[] {
    return [...this.sources.values()];
  }

  get(kind: SourceKind, namespace: string, name: string): ManagedSource | undefined {
    return this.sources.get(sourceKey(kind, namespace, name));
  }

  /**
   * What the agent subscribes to, sorted: the project of every GitRepository, and every prefix
   * of two or more segments of every OCIRepository's repository (the gateway knows which is a project).
   */
  subscriptionPaths(): string[] {
    const paths = new Set<string>();
    for (const source of this.sources.values()) {
      if (source.kind === 'GitRepository') paths.add(source.project);
      else for (const candidate of repositoryProjectCandidates(source.repository)) paths.add(candidate);
    }
    return [...paths].sort();
  }

  /** The GitRepositories that a push to `ref` of `projectPath` can affect. */
  forPush(projectPath: string, ref: string): ManagedGitRepository[] {
    const path = projectPath.toLowerCase();
    return this.ofKind('GitRepository').filter((s) => s.project === path && gitRefMatches(s.ref, ref));
  }

  /** The OCIRepositories a successful pipeline of `projectPath` may have pushed: its repository and those under it. */
  forPipeline(projectPath: string): ManagedOciRepository[] {
    const path = projectPath.toLowerCase();
    return this.ofKind('OCIRepository').filter((s) => s.repository === path || s.repository.startsWith(`${path}/`));
  }

  /** The OCIRepositories of exactly `repository` whose ref the pushed tag can change. */
  forRegistryTag(repository: string, tag: string): ManagedOciRepository[] {
    const path = repository.toLowerCase();
    return this.ofKind('OCIRepository').filter((s) => s.repository === path && ociTagMatches(s.ref, tag));
  }

  /** Takes an object from the watch of `kind`: manages it, updates it, or lets it go when it no longer points at us. */
  upsert(kind: SourceKind, object: KubernetesObject): void {
    const next = this.toSource(kind, object);
    const { name, namespace } = object.metadata ?? {};
    const key = name && namespace ? sourceKey(kind, namespace, name) : undefined;
    if (key === undefined) return;
    const previous = this.sources.get(key);
    if (next === undefined) {
      if (previous) this.options.logger.info({ source: key }, 'source no longer points at GitLab; not managed');
      this.forget(key);
      return;
    }
    if (previous && previous.uid !== next.uid) this.forget(key);
    const existing = this.sources.get(key);
    this.sources.set(key, next);
    if (existing) return this.emit({ type: 'updated', source: next, previous: existing });
    this.options.logger.info({ source: key, path: next.kind === 'GitRepository' ? next.project : next.repository }, 'managing source');
    this.emit({ type: 'added', source: next });
  }

  remove(kind: SourceKind, object: KubernetesObject): void {
    const { name, namespace } = object.metadata ?? {};
    if (name && namespace) this.forget(sourceKey(kind, namespace, name));
  }

  /** Forgets everything without telling listeners (the agent is stopping). */
  close(): void {
    this.listeners.clear();
    this.sources.clear();
  }

  private ofKind<K extends SourceKind>(kind: K): Extract<ManagedSource, { kind: K }>[] {
    return this.all().filter((s): s is Extract<ManagedSource, { kind: K }> => s.kind === kind);
  }

  private toSource(kind: SourceKind, object: KubernetesObject): ManagedSource | undefined {
    if (kind === 'GitRepository') {
      const parsed = GitRepositoryShape.safeParse(object);
      if (!parsed.success) return undefined;
      const { metadata, spec } = parsed.data;
      const project = projectPathFromRepoUrl(spec.url, this.options.gitlab);
      if (project === undefined) return undefined;
      return { kind, ...identity(kind, metadata), url: spec.url, suspended: spec.suspend === true, object, project, ref: spec.ref };
    }
    const registry = this.options.registryHost;
    if (registry === undefined) return undefined;
    const parsed = OciRepositoryShape.safeParse(object);
    if (!parsed.success) return undefined;
    const { metadata, spec } = parsed.data;
    const repository = repositoryFromOciUrl(spec.url, registry);
    if (repository === undefined) return undefined;
    return { kind, ...identity(kind, metadata), url: spec.url, suspended: spec.suspend === true, object, repository, ref: spec.ref };
  }

  private forget(key: string): void {
    const source = this.sources.get(key);
    if (!source) return;
    this.sources.delete(key);
    this.emit({ type: 'removed', source });
  }

  private emit(change: SourceChange): void {
    for (const listener of this.listeners) {
      try {
        listener(change);
      } catch (err) {
        this.options.logger.error({ err: err instanceof Error ? err.message : String(err), source: change.source.key }, 'source listener failed');
      }
    }
  }
}

function identity(kind: SourceKind, metadata: { name: string; namespace: string; uid: string }) {
  return { key: sourceKey(kind, metadata.namespace, metadata.name), namespace: metadata.namespace, name: metadata.name, uid: metadata.uid };
}
