import { describe, expect, it } from 'vitest';
import { refMatches, type GitRepositoryRef } from '../../src/agent/ref-match.js';

const SHA = 'da1560886d4f094c3e6c9ef40349f7d38b5d27d7';

describe('spec.ref ↔ pushed ref', () => {
  it.each<[string, GitRepositoryRef | undefined, string, string | null, boolean]>([
    // branch
    ['branch on its branch', { branch: 'main' }, 'refs/heads/main', 'main', true],
    ['branch on another branch', { branch: 'main' }, 'refs/heads/dev', 'main', false],
    ['branch on a tag of the same name', { branch: 'main' }, 'refs/tags/main', 'main', false],
    ['branch with slashes', { branch: 'release/1.x' }, 'refs/heads/release/1.x', 'main', true],
    ['branch names are case-sensitive', { branch: 'Main' }, 'refs/heads/main', 'main', false],
    ['branch is not a prefix match', { branch: 'main' }, 'refs/heads/main-2', 'main', false],
    // tag
    ['tag on its tag', { tag: 'v1.2.3' }, 'refs/tags/v1.2.3', 'main', true],
    ['tag on another tag', { tag: 'v1.2.3' }, 'refs/tags/v1.2.4', 'main', false],
    ['tag on a branch of the same name', { tag: 'v1.2.3' }, 'refs/heads/v1.2.3', 'main', false],
    ['tag wins over branch', { tag: 'v1', branch: 'main' }, 'refs/heads/main', 'main', false],
    // semver
    ['semver on any tag', { semver: '>=1.0.0' }, 'refs/tags/v2.0.0', 'main', true],
    ['semver on a non-semver tag too', { semver: '>=1.0.0' }, 'refs/tags/nightly', 'main', true],
    ['semver on a branch', { semver: '>=1.0.0' }, 'refs/heads/main', 'main', false],
    ['semver wins over tag', { semver: '1.x', tag: 'v1.0.0' }, 'refs/tags/v1.5.0', 'main', true],
    // name
    ['name on that ref', { name: 'refs/heads/main' }, 'refs/heads/main', 'main', true],
    ['name of a tag', { name: 'refs/tags/v1' }, 'refs/tags/v1', 'main', true],
    ['name on another ref', { name: 'refs/heads/main' }, 'refs/heads/dev', 'main', false],
    ['name of a merge request head', { name: 'refs/merge-requests/1/head' }, 'refs/merge-requests/1/head', 'main', true],
    ['name wins over branch', { name: 'refs/heads/dev', branch: 'main' }, 'refs/heads/main', 'main', false],
    // commit
    ['commit alone on the default branch', { commit: SHA }, 'refs/heads/main', 'main', true],
    ['commit alone on another branch', { commit: SHA }, 'refs/heads/dev', 'main', false],
    ['commit alone on a tag', { commit: SHA }, 'refs/tags/v1', 'main', false],
    ['commit with its branch', { commit: SHA, branch: 'dev' }, 'refs/heads/dev', 'main', true],
    ['commit with its branch, default branch pushed', { commit: SHA, branch: 'dev' }, 'refs/heads/main', 'main', false],
    // no ref
    ['no ref on the default branch', undefined, 'refs/heads/main', 'main', true],
    ['no ref on a non-default branch', undefined, 'refs/heads/feature', 'main', false],
    ['empty ref on the default branch', {}, 'refs/heads/trunk', 'trunk', true],
    ['empty strings count as unset', { branch: '', tag: '' }, 'refs/heads/main', 'main', true],
    ['no ref on a tag', undefined, 'refs/tags/v1', 'main', false],
    ['no ref, default branch unknown: any branch', undefined, 'refs/heads/feature', null, true],
    ['no ref, default branch unknown: not a tag', undefined, 'refs/tags/v1', null, false],
  ])('%s', (_what, ref, pushed, defaultBranch, expected) => {
    expect(refMatches(ref, pushed, defaultBranch)).toBe(expected);
  });
});
