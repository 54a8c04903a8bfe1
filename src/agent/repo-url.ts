/**
 * GitRepository `spec.url` → GitLab project path (`group/sub/project`), for URLs on our GitLab.
 *
 * Accepted forms (host compared case-insensitively, port ignored since SSH and HTTPS differ):
 * - `https://host[/relative-root]/group/sub/proj[.git]` (also `http://`)
 * - `ssh://[user@]host[:port]/group/proj[.git]`
 * - scp-like `[user@]host:group/proj[.git]`
 * The result is lower-case: GitLab paths compare case-insensitively.
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

const SCP_LIKE = /^(?:[^@/]+@)?(\[[^\]]+\]|[^:/]+):(.+)$/;

/** The GitLab project path a GitRepository URL points at, or undefined when it is not a project on our GitLab. */
export function projectPathFromRepoUrl(repoUrl: string, gitlab: GitLabLocation): string | undefined {
  const text = repoUrl.trim();
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(text)) return fromUrl(text, gitlab);
  const scp = SCP_LIKE.exec(text);
  if (!scp?.[1] || !scp[2]) return undefined;
  if (scp[1].toLowerCase() !== gitlab.hostname) return undefined;
  return normalizePath(scp[2]);
}

function fromUrl(text: string, gitlab: GitLabLocation): string | undefined {
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
  switch (url.protocol) {
    case 'http:':
    case 'https:': {
      const prefix = gitlab.pathPrefix;
      if (prefix !== '') {
        if (!path.toLowerCase().startsWith(`${prefix}/`)) return undefined;
        path = path.slice(prefix.length);
      }
      return normalizePath(path);
    }
    case 'ssh:':
    case 'git+ssh:':
    case 'ssh+git:':
      return normalizePath(path);
    default:
      return undefined;
  }
}

function normalizePath(raw: string): string | undefined {
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
