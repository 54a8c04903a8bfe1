/**
 * Flux's revision strings, read for what they name. An artifact revision is
 * `<branch or tag>@sha1:<commit>` (`master@sha1:363a6a8f…`; before Flux 2.0 `<branch>/<commit>`;
 * a commit-only ref gives `sha1:<commit>`), an OCI one `<tag>@sha256:<digest>`
 * (fluxcd/source-controller docs/spec/v1/gitrepositories.md and ocirepositories.md, "Artifact"),
 * and a HelmChart built from Git with reconcileStrategy Revision has the version
 * `<version>+<first 12 hex of the commit>[.<n>]` (fluxcd/source-controller CHANGELOG, 0.19.1).
 */

/** The commit a revision names: the full sha, or (a Helm chart version's metadata) a prefix of it. */
export function revisionCommit(revision: string | null | undefined): { sha: string; prefix: boolean } | undefined {
  if (!revision) return undefined;
  const text = revision.trim().toLowerCase();
  let match = /(?:^|@)sha1:([0-9a-f]{40})$/.exec(text);
  if (match) return { sha: match[1]!, prefix: false };
  match = /^(?:.+\/)?([0-9a-f]{40})$/.exec(text);
  if (match) return { sha: match[1]!, prefix: false };
  match = /\+([0-9a-f]{7,40})(?:\.\d+)?$/.exec(text);
  if (match) return { sha: match[1]!, prefix: true };
  return undefined;
}

export function revisionHasCommit(revision: string | null | undefined, sha: string | null | undefined): boolean {
  if (!sha) return false;
  const found = revisionCommit(revision);
  if (!found) return false;
  return found.prefix ? sha.toLowerCase().startsWith(found.sha) : found.sha === sha.toLowerCase();
}

/** `latest@sha256:<hex>` → `sha256:<hex>`. */
export function revisionDigest(revision: string | null | undefined): string | undefined {
  return /(sha256:[0-9a-f]{64})$/i.exec(revision ?? '')?.[1]?.toLowerCase();
}
