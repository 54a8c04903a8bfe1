/**
 * Which events can change what a Flux source fetches.
 *
 * GitRepository (fluxcd/source-controller api/v1/gitrepository_types.go, docs/spec/v1/gitrepositories.md):
 * `spec.ref` resolves with the precedence commit > name > semver > tag > branch, and "if not
 * specified, it defaults to a `master` branch reference": Flux fetches `master` whatever the
 * project's default branch is, so that is what a GitRepository without a ref follows.
 *
 * | `spec.ref` of the GitRepository         | triggered by a push to                              |
 * | --------------------------------------- | --------------------------------------------------- |
 * | `name: refs/heads/x` (any full ref)     | exactly that ref                                    |
 * | `semver: ">=1.0.0"`                     | any tag (`refs/tags/*`): a new tag may be the best  |
 * | `tag: v1.2.3`                           | `refs/tags/v1.2.3`                                  |
 * | `branch: main` (with or without commit) | `refs/heads/main`                                   |
 * | `commit: <sha>` alone                   | nothing: the commit pins it, and no branch says where it lives |
 * | no `ref` (or only empty fields)         | `refs/heads/master`, Flux's default                 |
 *
 * Git refs are case-sensitive, and so is this comparison. Deletions match like any other push:
 * Flux should learn at once that its branch or tag is gone, and for semver a deleted tag can
 * change which tag is the best match.
 *
 * OCIRepository (api/v1/ocirepository_types.go, docs/spec/v1/ocirepositories.md): `spec.ref`
 * resolves with the precedence digest > semver > tag, and defaults to the `latest` tag.
 *
 * | `spec.ref` of the OCIRepository | reconciled by a registry push of tag          |
 * | ------------------------------- | --------------------------------------------- |
 * | `digest: sha256:…`              | never: the digest pins it                     |
 * | `semver: ">=1.0.0"`             | any tag: a new tag may be the best match      |
 * | `tag: v1`                       | `v1`                                          |
 * | no `ref`                        | `latest`, Flux's default                      |
 */
export interface GitRepositoryRef {
  branch?: string | undefined;
  tag?: string | undefined;
  semver?: string | undefined;
  name?: string | undefined;
  commit?: string | undefined;
}

export interface OciRepositoryRef {
  digest?: string | undefined;
  semver?: string | undefined;
  semverFilter?: string | undefined;
  tag?: string | undefined;
}

/** Flux's branch when a GitRepository has no ref. */
export const FLUX_DEFAULT_BRANCH = 'master';
/** Flux's tag when an OCIRepository has no ref. */
export const FLUX_DEFAULT_TAG = 'latest';

const BRANCH_PREFIX = 'refs/heads/';
const TAG_PREFIX = 'refs/tags/';

const given = (value: string | null | undefined): value is string => typeof value === 'string' && value !== '';

/** Whether a push to `pushedRef` (a full ref such as `refs/heads/main`) can affect a GitRepository with `ref`. */
export function gitRefMatches(ref: GitRepositoryRef | undefined, pushedRef: string): boolean {
  if (given(ref?.name)) return pushedRef === ref.name;
  if (given(ref?.semver)) return pushedRef.startsWith(TAG_PREFIX) && pushedRef.length > TAG_PREFIX.length;
  if (given(ref?.tag)) return pushedRef === TAG_PREFIX + ref.tag;
  if (given(ref?.branch)) return pushedRef === BRANCH_PREFIX + ref.branch;
  if (given(ref?.commit)) return false;
  return pushedRef === BRANCH_PREFIX + FLUX_DEFAULT_BRANCH;
}

/** Whether a tag pushed to the OCIRepository's repository can change what it fetches. */
export function ociTagMatches(ref: OciRepositoryRef | undefined, pushedTag: string): boolean {
  if (given(ref?.digest)) return false;
  if (given(ref?.semver)) return pushedTag !== '';
  if (given(ref?.tag)) return pushedTag === ref.tag;
  return pushedTag === FLUX_DEFAULT_TAG;
}
