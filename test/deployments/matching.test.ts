/** The pure rules of deployments: which sources a push or an artifact goes through, and how far a deployment got. */
import { describe, expect, test } from 'vitest';
import { gitlabProjectOf, ociCommitOf, shortRef, statusDescription } from '../../src/deployments/commit-target.js';
import { affectedBy, gitRefTakes, ociRefTakes, triggerOf, type Trigger } from '../../src/deployments/matching.js';
import { advance, type TrackedDeployment } from '../../src/deployments/progress.js';
import { revisionCommit, revisionHasCommit } from '../../src/deployments/revisions.js';
import { ReportedObject, type ReportedObject as Obj } from '../../src/protocol/kasgate-v1.js';

const SHA = 'a'.repeat(40);
const OTHER = 'b'.repeat(40);
const obj = (input: Record<string, unknown>): Obj => ReportedObject.parse({ namespace: 'flux-system', ready: 'Unknown', ...input });

describe('gitRefTakes: what a GitRepository with this spec.ref fetches (Flux precedence commit > name > semver > tag > branch)', () => {
  test.each([
    [null, 'refs/heads/master', true],
    [null, 'refs/heads/main', false],
    [{}, 'refs/heads/master', true],
    [{ branch: 'main' }, 'refs/heads/main', true],
    [{ branch: 'main' }, 'refs/heads/Main', false],
    [{ branch: 'main' }, 'refs/tags/main', false],
    [{ tag: 'v1.0.0' }, 'refs/tags/v1.0.0', true],
    [{ tag: 'v1.0.0', branch: 'main' }, 'refs/heads/main', false],
    [{ semver: '>=1.0.0 <2.0.0' }, 'refs/tags/v1.2.3', true],
    [{ semver: '>= 1.0.0, < 2.0.0' }, 'refs/tags/1.9.0', true],
    [{ semver: '>=1.0.0 <2.0.0' }, 'refs/tags/v2.0.0', false],
    [{ semver: '~1.2' }, 'refs/tags/v1.2', true],
    [{ semver: '>=1.0.0' }, 'refs/tags/release-candidate', false],
    [{ semver: '>=1.0.0' }, 'refs/heads/main', false],
    [{ name: 'refs/merge-requests/1/head' }, 'refs/merge-requests/1/head', true],
    [{ name: 'refs/heads/main', branch: 'other' }, 'refs/heads/other', false],
    [{ commit: SHA }, 'refs/heads/main', true],
    [{ commit: OTHER }, 'refs/heads/main', false],
    [{ commit: SHA.slice(0, 12), branch: 'main' }, 'refs/heads/main', true],
    [{ commit: SHA, branch: 'main' }, 'refs/heads/dev', false],
  ])('%j and a push to %s of commit aaa… → %s', (ref, pushed, expected) => {
    expect(gitRefTakes(ref as Record<string, string> | null, pushed, SHA)).toBe(expected);
  });
});

test('ociRefTakes: tag equal, semver in range, no ref is latest, a digest never moves', () => {
  expect(ociRefTakes(null, 'latest')).toBe(true);
  expect(ociRefTakes(null, 'v1')).toBe(false);
  expect(ociRefTakes({ tag: 'v1' }, 'v1')).toBe(true);
  expect(ociRefTakes({ semver: '1.x' }, '1.4.0')).toBe(true);
  expect(ociRefTakes({ semver: '1.x' }, '2.0.0')).toBe(false);
  expect(ociRefTakes({ digest: 'sha256:abc' }, 'latest')).toBe(false);
});

test('triggerOf: the commit is checkout_sha when set, else after; deletions deploy nothing', () => {
  expect(triggerOf({ kind: 'tag_push', projectPath: 'g/a', ref: 'refs/tags/v1', after: OTHER, checkoutSha: SHA })).toEqual({
    type: 'git',
    projectPath: 'g/a',
    ref: 'refs/tags/v1',
    sha: SHA,
  });
  expect(triggerOf({ kind: 'push', projectPath: 'g/a', ref: 'refs/heads/main', after: OTHER.toUpperCase(), checkoutSha: null })).toMatchObject({ sha: OTHER });
  expect(triggerOf({ kind: 'push', projectPath: 'g/a', ref: 'refs/heads/main', after: '0'.repeat(40), checkoutSha: null })).toBeUndefined();
});

test('revisionCommit reads Flux v1 and v2 revisions and Helm chart versions built from Git', () => {
  expect(revisionCommit(`main@sha1:${SHA}`)).toEqual({ sha: SHA, prefix: false });
  expect(revisionCommit(`refs/heads/main@sha1:${SHA}`)).toEqual({ sha: SHA, prefix: false });
  expect(revisionCommit(`sha1:${SHA}`)).toEqual({ sha: SHA, prefix: false });
  expect(revisionCommit(`main/${SHA}`)).toEqual({ sha: SHA, prefix: false });
  expect(revisionCommit('1.2.3+aaaaaaaaaaaa.1')).toEqual({ sha: 'aaaaaaaaaaaa', prefix: true });
  expect(revisionCommit('latest@sha256:' + 'c'.repeat(64))).toBeUndefined();
  expect(revisionCommit('6.0.3')).toBeUndefined();
  expect(revisionHasCommit('1.2.3+aaaaaaaaaaaa', SHA)).toBe(true);
  expect(revisionHasCommit(`main@sha1:${SHA}`, OTHER)).toBe(false);
  expect(revisionHasCommit(null, SHA)).toBe(false);
});

describe('affectedBy', () => {
  const git = obj({ kind: 'GitRepository', name: 'app', project: 'Group/App', ref: { branch: 'main' } });
  const oci = obj({ kind: 'OCIRepository', name: 'oci', url: 'oci://registry.example.com/group/app/manifests', ref: { tag: 'latest' } });
  const ks = obj({ kind: 'Kustomization', name: 'apps', sourceRef: { kind: 'GitRepository', namespace: 'flux-system', name: 'app' } });
  const onOci = obj({ kind: 'Kustomization', name: 'from-oci', sourceRef: { kind: 'OCIRepository', namespace: 'flux-system', name: 'oci' } });
  const helmByVersion = obj({ kind: 'HelmRelease', name: 'chart', revision: '6.0.3', sourceRef: { kind: 'GitRepository', namespace: 'flux-system', name: 'app' } });
  const helmByCommit = obj({ kind: 'HelmRelease', name: 'chart-rev', revision: '6.0.3+aaaaaaaaaaaa', sourceRef: { kind: 'GitRepository', namespace: 'flux-system', name: 'app' } });
  const all = [git, oci, ks, onOci, helmByVersion, helmByCommit];
  const names = (t: Trigger) => affectedBy(t, all).map((a) => a.workload.name);

  test('a push reaches the workloads on GitRepositories of that project (any case) whose ref it moves; a HelmRelease only when its revisions name commits', () => {
    expect(names({ type: 'git', projectPath: 'group/app', ref: 'refs/heads/main', sha: SHA })).toEqual(['apps', 'chart-rev']);
    expect(names({ type: 'git', projectPath: 'group/app', ref: 'refs/heads/dev', sha: SHA })).toEqual([]);
    expect(names({ type: 'git', projectPath: 'group/other', ref: 'refs/heads/main', sha: SHA })).toEqual([]);
  });

  test('artifacts reach OCIRepositories: a pipeline those under its project, a registry push that repository when the tag moves its ref', () => {
    expect(names({ type: 'oci-pipeline', projectPath: 'group/app', ref: 'main', sha: SHA })).toEqual(['from-oci']);
    expect(names({ type: 'oci-pipeline', projectPath: 'group/ap', ref: 'main', sha: SHA })).toEqual([]);
    const registry = { type: 'oci-registry' as const, projectPath: 'group/app', repository: 'group/app/manifests', digest: null };
    expect(names({ ...registry, tag: 'latest' })).toEqual(['from-oci']);
    expect(names({ ...registry, tag: 'v2' })).toEqual([]);
  });
});

describe('advance', () => {
  const git: Trigger = { type: 'git', projectPath: 'g/a', ref: 'refs/heads/main', sha: SHA };
  const d = (state: TrackedDeployment['state'], extra: Partial<TrackedDeployment> = {}): TrackedDeployment => ({
    state,
    sourceType: 'git',
    sha: SHA,
    fetchedRevision: null,
    trigger: git,
    ...extra,
  });
  const source = (sha: string) => obj({ kind: 'GitRepository', name: 'app', ready: 'True', revision: `main@sha1:${sha}` });
  const ks = (fields: Record<string, unknown>) => obj({ kind: 'Kustomization', name: 'apps', ...fields });

  test('pending stays pending until the source has the commit; then fetched, and applied once Ready True at it', () => {
    expect(advance(d('pending'), source(OTHER), undefined)).toEqual([]);
    expect(advance(d('pending'), source(SHA), ks({ ready: 'True', revision: `main@sha1:${OTHER}` })).map((s) => s.state)).toEqual(['fetched']);
    expect(advance(d('pending'), source(SHA), ks({ ready: 'True', revision: `main@sha1:${SHA}`, reason: 'ReconciliationSucceeded' }))).toEqual([
      { state: 'fetched', revision: `main@sha1:${SHA}`, fetchedRevision: `main@sha1:${SHA}` },
      { state: 'applied', revision: `main@sha1:${SHA}`, reason: 'ReconciliationSucceeded', message: null },
    ]);
  });

  test('a workload already at the commit means the source has it, even if the source report lags', () => {
    expect(advance(d('pending'), source(OTHER), ks({ ready: 'True', revision: `main@sha1:${SHA}` })).map((s) => s.state)).toEqual(['fetched', 'applied']);
  });

  test('Ready False at the attempted commit is failed; DependencyNotReady before any attempt is not; failed recovers to applied', () => {
    const failing = ks({ ready: 'False', reason: 'BuildFailed', message: 'kustomize build failed', attemptedRevision: `main@sha1:${SHA}`, revision: `main@sha1:${OTHER}` });
    expect(advance(d('fetched'), source(SHA), failing)).toEqual([
      { state: 'failed', revision: `main@sha1:${SHA}`, reason: 'BuildFailed', message: 'kustomize build failed' },
    ]);
    const waiting = ks({ ready: 'False', reason: 'DependencyNotReady', attemptedRevision: `main@sha1:${OTHER}`, revision: `main@sha1:${OTHER}` });
    expect(advance(d('fetched'), source(SHA), waiting)).toEqual([]);
    expect(advance(d('failed'), source(SHA), failing)).toEqual([]);
    expect(advance(d('failed'), source(SHA), ks({ ready: 'True', revision: `main@sha1:${SHA}` })).map((s) => s.state)).toEqual(['applied']);
  });

  test('a suspended workload, or a final state, moves nowhere', () => {
    expect(advance(d('fetched'), source(SHA), ks({ ready: 'True', revision: `main@sha1:${SHA}`, suspended: true }))).toEqual([]);
    for (const state of ['applied', 'superseded', 'timed_out'] as const) expect(advance(d(state), source(SHA), ks({ ready: 'True', revision: `main@sha1:${SHA}` }))).toEqual([]);
  });

  test('OCI: fetched when the artifact says it was built from the commit; applied when the workload applies that artifact', () => {
    const pipeline: Trigger = { type: 'oci-pipeline', projectPath: 'group/app', ref: 'main', sha: SHA };
    const artifact = `latest@sha256:${'c'.repeat(64)}`;
    const ociSource = obj({ kind: 'OCIRepository', name: 'oci', ready: 'True', revision: artifact, originRevision: `main@sha1:${SHA}`, originSource: 'https://gitlab.example.com/group/app' });
    const pending = d('pending', { sourceType: 'oci', sha: null, trigger: pipeline });
    const steps = advance(pending, ociSource, ks({ ready: 'True', revision: artifact }));
    expect(steps.map((s) => s.state)).toEqual(['fetched', 'applied']);
    expect(steps[0]!.fetchedRevision).toBe(artifact);
    expect(advance(pending, { ...ociSource, originRevision: `main@sha1:${OTHER}` }, undefined)).toEqual([]);
    const registry: Trigger = { type: 'oci-registry', projectPath: 'group/app', repository: 'group/app', tag: 'latest', digest: `sha256:${'c'.repeat(64)}` };
    expect(advance(d('pending', { sourceType: 'oci', sha: null, trigger: registry }), ociSource, undefined).map((s) => s.state)).toEqual(['fetched']);
  });
});

test("ociCommitOf: the status goes to the project and commit of the artifact's origin, when on this GitLab", () => {
  const source = obj({ kind: 'OCIRepository', name: 'oci', originRevision: `main@sha1:${SHA}`, originSource: 'https://gitlab.example.com/group/app.git' });
  expect(ociCommitOf(source, 'https://gitlab.example.com')).toEqual({ project: 'group/app', sha: SHA, ref: 'main' });
  expect(ociCommitOf(source, 'https://other.example.com')).toBeUndefined();
  expect(ociCommitOf({ ...source, originRevision: null }, 'https://gitlab.example.com')).toBeUndefined();
  expect(gitlabProjectOf('https://example.com/gitlab/group/sub/app/-/tree/main', 'https://example.com/gitlab/')).toBe('group/sub/app');
  expect(gitlabProjectOf('https://example.com/elsewhere/group/app', 'https://example.com/gitlab')).toBeUndefined();
  expect(gitlabProjectOf('https://gitlab.example.com/lonely', 'https://gitlab.example.com')).toBeUndefined();
});

test('shortRef and statusDescription', () => {
  expect(shortRef('refs/heads/feature/x')).toBe('feature/x');
  expect(shortRef('refs/tags/v1')).toBe('v1');
  expect(shortRef('refs/merge-requests/1/head')).toBe('refs/merge-requests/1/head');
  expect(statusDescription('a\n  b')).toBe('a b');
  expect(statusDescription('x'.repeat(300))).toHaveLength(255);
});
