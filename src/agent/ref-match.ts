/**
 * Which pushes can change what a Flux GitRepository fetches.
 *
 * Flux resolves `spec.ref` with this precedence: commit > name > semver > tag > branch. A commit
 * pins a revision, so for matching we look past it to the field that says where that commit
 * lives (a branch given alongside it), and fall back to the default branch otherwise.
 *
 * | `spec.ref` of the GitRepository        | triggered by a push to                              |
 * | -------------------------------------- | --------------------------------------------------- |
 * | `name: refs/heads/x` (any full ref)    | exactly that ref                                    |
 * | `semver: ">=1.0.0"`                    | any tag (`refs/tags/*`): a new tag may be the best  |
 * | `tag: v1.2.3`                          | `refs/tags/v1.2.3`                                  |
 * | `branch: main` (with or without commit)| `refs/heads/main`                                   |
 * | `commit: <sha>` alone, or no `ref`     | the project's default branch (`refs/heads/<default>`) from the push; any branch when the push does not carry it |
 *
 * Git refs are case-sensitive, and so is this comparison. Deletions match like any other push:
 * Flux should learn at once that its branch or tag is gone, and for semver a deleted tag can
 * change which tag is the best match.
 */
export interface GitRepositoryRef {
  branch?: string | undefined;
  tag?: string | undefined;
  semver?: string | undefined;
  name?: string | undefined;
  commit?: string | undefined;
}

const BRANCH_PREFIX = 'refs/heads/';
const TAG_PREFIX = 'refs/tags/';

/** Whether a push to `pushedRef` (a full ref such as `refs/heads/main`) can affect a GitRepository with `ref`. */
export function refMatches(
  ref: GitRepositoryRef | undefined,
  pushedRef: string,
  defaultBranch: string | null | undefined,
): boolean {
  const given = (value: string | null | undefined): value is string => typeof value === 'string' && value !== '';
  if (given(ref?.name)) return pushedRef === ref.name;
  if (given(ref?.semver)) return pushedRef.startsWith(TAG_PREFIX) && pushedRef.length > TAG_PREFIX.length;
  if (given(ref?.tag)) return pushedRef === TAG_PREFIX + ref.tag;
  if (given(ref?.branch)) return pushedRef === BRANCH_PREFIX + ref.branch;
  if (given(defaultBranch)) return pushedRef === BRANCH_PREFIX + defaultBranch;
  // Without the default branch we cannot tell; an extra reconcile is cheap, a missed one is not.
  return pushedRef.startsWith(BRANCH_PREFIX) && pushedRef.length > BRANCH_PREFIX.length;
}
