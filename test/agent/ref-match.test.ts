import { describe, expect, it } from 'vitest';
import { gitRefMatches, ociTagMatches, type GitRepositoryRef, type OciRepositoryRef } from '../../src/agent/ref-match.js';

const SHA = 'da1560886d4f094c3e6c9ef40349f7d38b5d27d7';
const DIGEST = 'sha256:3b6cdcc7adcc9a84d3214ee1c029543789d90b5ae69debe9efa3f66e982875de';

describe('GitRepository spec.ref ↔ pushed ref', () => {
  it.each<[string, GitRepositoryRef | undefined, string, boolean]>([
    // branch
    ['branch on its branch', { branch: 'main' }, 'refs/heads/main', true],
    ['branch on another branch', { branch: 'main' }, 'refs/heads/dev', false],
    ['branch on a tag of the same name', { branch: 'main' }, 'refs/tags/main', false],
    ['branch with slashes', { branch: 'release/1.x' }, 'refs/heads/release/1.x', true],
    ['branch names are case-sensitive', { branch: 'Main' }, 'refs/heads/main', false],
    ['branch is not a prefix match', { branch: 'main' }, 'refs/heads/main-2', false],
    // tag
    ['tag on its tag', { tag: 'v1.2.3' }, 'refs/tags/v1.2.3', true],
    ['tag on another tag', { tag: 'v1.2.3' }, 'refs/tags/v1.2.4', false],
    ['tag on a branch of the same name', { tag: 'v1.2.3' }, 'refs/heads/v1.2.3', false],
    ['tag wins over branch', { tag: 'v1', branch: 'main' }, 'refs/heads/main', false],
    // semver
    ['semver on any tag', { semver: '>=1.0.0' }, 'refs/tags/v2.0.0', true],
    ['semver on a non-semver tag too', { semver: '>=1.0.0' }, 'refs/tags/nightly', true],
    ['semver on a branch', { semver: '>=1.0.0' }, 'refs/heads/main', false],
    ['semver wins over tag', { semver: '1.x', tag: 'v1.0.0' }, 'refs/tags/v1.5.0', true],
    // name
    ['name on that ref', { name: 'refs/heads/main' }, 'refs/heads/main', true],
    ['name of a tag', { name: 'refs/tags/v1' }, 'refs/tags/v1', true],
    ['name on another ref', { name: 'refs/heads/main' }, 'refs/heads/dev', false],
    ['name of a merge request head', { name: 'refs/merge-requests/1/head' }, 'refs/merge-requests/1/head', true],
    ['name wins over branch', { name: 'refs/heads/dev', branch: 'main' }, 'refs/heads/main', false],
    // commit
    ['commit with its branch', { commit: SHA, branch: 'dev' }, 'refs/heads/dev', true],
    ['commit with its branch, another branch pushed', { commit: SHA, branch: 'dev' }, 'refs/heads/main', false],
    ['commit alone: pinned, not master', { commit: SHA }, 'refs/heads/master', false],
    ['commit alone: pinned, not any branch', { commit: SHA }, 'refs/heads/main', false],
    // no ref: Flux fetches master, whatever the project's default branch
    ['no ref on master', undefined, 'refs/heads/master', true],
    ['no ref on main (even when main is the default branch)', undefined, 'refs/heads/main', false],
    ['no ref on a feature branch', undefined, 'refs/heads/feature', false],
    ['no ref on a tag named master', undefined, 'refs/tags/master', false],
    ['empty ref on master', {}, 'refs/heads/master', true],
    ['empty strings count as unset', { branch: '', tag: '' }, 'refs/heads/master', true],
    ['empty strings count as unset, not main', { branch: '', tag: '' }, 'refs/heads/main', false],
  ])('%s', (_what, ref, pushed, expected) => {
    expect(gitRefMatches(ref, pushed)).toBe(expected);
  });
});

describe('OCIRepository spec.ref ↔ pushed tag', () => {
  it.each<[string, OciRepositoryRef | undefined, string, boolean]>([
    // tag
    ['tag on that tag', { tag: 'v1.2.3' }, 'v1.2.3', true],
    ['tag on another tag', { tag: 'v1.2.3' }, 'v1.2.4', false],
    ['tags are case-sensitive', { tag: 'Prod' }, 'prod', false],
    ['tag is not a prefix match', { tag: 'v1' }, 'v1.1', false],
    // semver
    ['semver on a matching tag', { semver: '>=1.0.0' }, '1.4.0', true],
    ['semver on any tag (a new one may be the best match)', { semver: '>=1.0.0' }, 'nightly', true],
    ['semver wins over tag', { semver: '1.x', tag: 'v1.0.0' }, '1.5.0', true],
    ['semver with a filter still on any tag', { semver: '>=1.0.0-0', semverFilter: '.*-rc.*' }, '1.1.0', true],
    // digest
    ['digest never', { digest: DIGEST }, 'latest', false],
    ['digest wins over tag', { digest: DIGEST, tag: 'v1' }, 'v1', false],
    ['digest wins over semver', { digest: DIGEST, semver: '>=1.0.0' }, '2.0.0', false],
    // no ref: Flux pulls latest
    ['no ref on latest', undefined, 'latest', true],
    ['no ref on another tag', undefined, 'v1', false],
    ['empty ref on latest', {}, 'latest', true],
    ['empty strings count as unset', { tag: '', digest: '' }, 'latest', true],
  ])('%s', (_what, ref, tag, expected) => {
    expect(ociTagMatches(ref, tag)).toBe(expected);
  });
});
