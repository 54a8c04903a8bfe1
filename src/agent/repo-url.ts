/**
 * Source URLs → the GitLab paths they point at.
 *
 * GitRepository `spec.url` → project path (`group/sub/project`), for URLs on our GitLab. Flux's
 * CRD admits only `^(http|https|ssh)://.*$` (fluxcd/source-controller api/v1/gitrepository_types.go,
 * and docs/spec/v1/gitrepositories.md: "the shorter scp-like syntax is not supported"), so
 * those are the only forms a cluster can hold:
 * - `https://host[/relative-root]/group/sub/proj[.git]` (also `http://`)
 * - `ssh://[user@]host[:port]/group/proj[.git]`
 * The host is compared case-insensitively and the port ignored (SSH and HTTPS differ).
 *
 * OCIRepository `spec.url` → registry repository path, for `oci://<registry host>/<repository>`
 * (api/v1/ocirepository_types.go: `^oci://.*$`, no tag or digest in it).
 *
 * Results are lower-case: GitLab paths compare case-insensitively, and registry repository
 * names are lower-case.
 */
import { ProjectPath } from '../protocol/kasgate-v1.js';

export interface GitLabLocation {
  /** Lower-case host name of the GitLab instance, without port. */
  readonly hostname: string;
  /** Relative URL root of an instance served under a path (`/gitlab`), lower-case; '' when none. */
  readonly pathPrefix: string;
}

export function gitlabLocation(externalUrl: string): GitLabLocation {
  const url = new URL(externalUrl);
  return {
    hostname: url.hostname.toLowerCase(),
    pathPrefix: url.pathname.replace(/\/+$/, '').toLowerCase(),
  };
}

/** The GitLab project path a GitRepository URL points at, or undefined when it is not a project on our GitLab. */
export function projectPathFromRepoUrl(repoUrl: string, gitlab: GitLabLocation): string | undefined {
  const text = repoUrl.trim();
  if (!/^(https?|ssh):\/\//i.test(text)) return undefined;
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return undefined;
  }
  if (url.hostname.toLowerCase() !== gitlab.hostname) return undefined;
  let path: string;
  try {
    path = decodeURIComponent(url.pathname);
  } catch {
    return undefined;
  }
  if (url.protocol !== 'ssh:' && gitlab.pathPrefix !== '') {
    if (!path.toLowerCase().startsWith(`${gitlab.pathPrefix}/`)) return undefined;
    path = path.slice(gitlab.pathPrefix.length);
  }
  return normalizeProjectPath(path);
}

function normalizeProjectPath(raw: string): string | undefined {
  const segments = raw
    .replace(/\/+$/, '')
    .replace(/\.git$/i, '')
    .split('/')
    .filter((segment) => segment !== '');
  // A project lives in a namespace; `-` starts GitLab's UI routes (`/-/tree/main`), never a project.
  if (segments.length < 2) return undefined;
  if (segments.some((segment) => segment === '.' || segment === '..' || segment === '-')) return undefined;
  const path = segments.join('/').toLowerCase();
  return ProjectPath.safeParse(path).success ? path : undefined;
}

/** A registry as `$CI_REGISTRY` names it: host, and port when it has one. Lower-case. */
export type RegistryHost = string;

const HOST_AND_PORT = /^(?:\[[0-9a-f:.]+\]|[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*)(?::(\d{1,5}))?$/;

/** Normalizes `KASGATE_REGISTRY_HOST`; undefined when it is not `host[:port]`. */
export function parseRegistryHost(value: string): RegistryHost | undefined {
  const text = value.trim().toLowerCase();
  const match = HOST_AND_PORT.exec(text);
  if (!match) return undefined;
  if (match[1] !== undefined && Number(match[1]) > 65535) return undefined;
  return text.replace(/:443$/, '');
}

/** One component of a distribution repository name (the registry's own grammar). */
const REPOSITORY_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;

/**
 * The repository path (`group/project[/image]`) of an OCIRepository URL on our registry, or
 * undefined when the URL is another registry's, carries a tag or digest, or is not a GitLab
 * repository (which has at least a namespace and a project).
 */
export function repositoryFromOciUrl(ociUrl: string, registry: RegistryHost): string | undefined {
  const text = ociUrl.trim();
  if (!/^oci:\/\//i.test(text)) return undefined;
  const rest = text.slice('oci://'.length);
  const slash = rest.indexOf('/');
  if (slash < 0) return undefined;
  const host = rest.slice(0, slash).toLowerCase().replace(/:443$/, '');
  if (host !== registry) return undefined;
  const segments = rest
    .slice(slash + 1)
    .replace(/\/+$/, '')
    .toLowerCase()
    .split('/');
  if (segments.length < 2) return undefined;
  if (!segments.every((segment) => REPOSITORY_COMPONENT.test(segment))) return undefined;
  return segments.join('/');
}

/**
 * The project paths a registry repository may belong to: every prefix of two or more segments
 * (`group/app/manifests` → `group/app`, `group/app/manifests`). A GitLab repository is
 * `<project path>` or `<project path>/<image name>`, and only the gateway knows which prefix is
 * the project, so the agent subscribes to them all.
 */
export function repositoryProjectCandidates(repository: string): string[] {
  const segments = repository.split('/');
  const candidates: string[] = [];
  for (let length = 2; length <= segments.length; length++) candidates.push(segments.slice(0, length).join('/'));
  return candidates;
}
