/** Where a deployment's commit statuses go on GitLab, and what they may say. */
import type { ReportedObject } from '../protocol/kasgate-v1.js';
import { BRANCH_PREFIX, TAG_PREFIX } from './matching.js';
import { revisionCommit } from './revisions.js';

/** Where a commit status goes, and for which commit. */
export interface CommitTarget {
  /** GitLab's :id (a numeric project id or a project path). */
  project: string;
  sha: string;
  /** The branch or tag name. */
  ref: string | null;
}

/** refs/heads/main → main, refs/tags/v1 → v1; other refs stay whole. */
export function shortRef(ref: string): string {
  if (ref.startsWith(BRANCH_PREFIX)) return ref.slice(BRANCH_PREFIX.length);
  if (ref.startsWith(TAG_PREFIX)) return ref.slice(TAG_PREFIX.length);
  return ref;
}

/**
 * The project path of a URL on this GitLab (`org.opencontainers.image.source`), or undefined when
 * it is on another host or not a project URL. `https://gitlab.example.com/group/app(.git)` → `group/app`.
 */
export function gitlabProjectOf(sourceUrl: string | null | undefined, gitlabUrl: string | undefined): string | undefined {
  if (!sourceUrl || !gitlabUrl) return undefined;
  let source: URL;
  let base: URL;
  try {
    source = new URL(sourceUrl.replace(/^git\+/, ''));
    base = new URL(gitlabUrl);
  } catch {
    return undefined;
  }
  if (source.hostname.toLowerCase() !== base.hostname.toLowerCase()) return undefined;
  const prefix = base.pathname.replace(/\/+$/, '');
  if (prefix && !source.pathname.startsWith(`${prefix}/`)) return undefined;
  const path = source.pathname
    .slice(prefix.length)
    .replace(/^\/+|\/+$/g, '')
    .replace(/\.git$/, '')
    // A link into the project (…/-/tree/main) is still the project.
    .split('/-/')[0]!;
  return path.split('/').filter(Boolean).length >= 2 ? path : undefined;
}

/** For an OCI source: the commit its artifact was built from, from the artifact's origin metadata. */
export function ociCommitOf(source: ReportedObject, gitlabUrl: string | undefined): CommitTarget | undefined {
  const commit = revisionCommit(source.originRevision);
  const project = gitlabProjectOf(source.originSource, gitlabUrl);
  if (!commit || commit.prefix || !project) return undefined;
  const ref = source.originRevision!.includes('@') ? source.originRevision!.slice(0, source.originRevision!.lastIndexOf('@')) : null;
  return { project, sha: commit.sha, ref: ref ? shortRef(ref) : null };
}

/** The text of a commit status description: at most 255 characters, as GitLab allows. */
export function statusDescription(text: string): string {
  const oneLine = text.replace(/\s+/g, ' ').trim();
  return oneLine.length <= 255 ? oneLine : `${oneLine.slice(0, 254)}…`;
}
