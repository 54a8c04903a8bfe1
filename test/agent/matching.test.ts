/**
 * Every row of the two matching tables (docs/agent.md), through a running agent: for each event
 * the scripted gateway sends, exactly the sources it can change are annotated, and no others.
 * Also: OCIRepositories and the subscription they add, and what happens without
 * KASGATE_REGISTRY_HOST.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ArtifactFrame, PushFrame, ServerFrame } from '../../src/protocol/kasgate-v1.js';
import { createHarness, type Harness } from './support/harness.js';
import { ProtocolPeer, type PeerConnection } from './support/protocol-peer.js';
import { waitFor } from './support/wait.js';

const TOKEN = 'kgagent_matching-0123456789abcdef';
const SHA = 'da1560886d4f094c3e6c9ef40349f7d38b5d27d7';
const DIGEST = 'sha256:3b6cdcc7adcc9a84d3214ee1c029543789d90b5ae69debe9efa3f66e982875de';

let eventIds = 100;
const nextId = (): string => String(++eventIds);

const pushOf = (path: string, ref: string, defaultBranch: string | null = 'main'): PushFrame => ({
  type: 'push',
  eventId: nextId(),
  project: { id: 1, path, defaultBranch },
  ref,
  before: null,
  after: SHA,
  receivedAt: new Date().toISOString(),
});

const pipelineOf = (path: string): ArtifactFrame => ({
  type: 'artifact',
  eventId: nextId(),
  source: 'pipeline',
  project: { id: 1, path, defaultBranch: 'main' },
  ref: 'main',
  sha: SHA,
  pipelineId: 31,
  receivedAt: new Date().toISOString(),
});

const registryOf = (repository: string, tag: string, project = repository.split('/').slice(0, 2).join('/')): ArtifactFrame => ({
  type: 'artifact',
  eventId: nextId(),
  source: 'registry',
  project: { id: 1, path: project, defaultBranch: 'main' },
  repository,
  tag,
  digest: DIGEST,
  receivedAt: new Date().toISOString(),
});

let h: Harness;
let peer: ProtocolPeer;
let conn: PeerConnection;

/** Sends one event, waits for its ack, and returns the sources annotated for it, sorted. */
async function annotatedBy(frame: ServerFrame & { eventId: string }): Promise<string[]> {
  const before = h.kube.sourcePatches.length;
  conn.send(frame);
  await waitFor(() => conn.framesOf('ack').some((a) => a.eventId === frame.eventId), 5000, `the ack of ${frame.eventId}`);
  return h.kube.sourcePatches
    .slice(before)
    .filter((p) => p.failed === undefined)
    .map((p) => `${p.namespace}/${p.name}`)
    .sort();
}

describe('which sources an event annotates', () => {
  beforeAll(async () => {
    h = await createHarness();
    peer = await new ProtocolPeer(TOKEN).start();
    const git = (name: string, ref?: Record<string, string>) =>
      h.kube.putGitRepository('git', name, { url: 'https://gitlab.example.com/group/app.git', ...(ref ? { ref } : {}) });
    git('by-name', { name: 'refs/heads/release' });
    git('by-semver', { semver: '>=1.0.0' });
    git('by-tag', { tag: 'v1.2.3' });
    git('by-branch', { branch: 'main' });
    git('by-commit-and-branch', { commit: SHA, branch: 'dev' });
    git('by-commit', { commit: SHA });
    git('no-ref');
    h.kube.putGitRepository('git', 'other-project', { url: 'https://gitlab.example.com/group/other.git', ref: { branch: 'main' } });

    const oci = (name: string, path: string, ref?: Record<string, string>) =>
      h.kube.putOciRepository('oci', name, { url: `oci://registry.example.com/${path}`, ...(ref ? { ref } : {}) });
    oci('tag-main', 'group/app/manifests', { tag: 'main' });
    oci('semver', 'group/app/manifests', { semver: '>=1.0.0' });
    oci('digest', 'group/app/manifests', { digest: DIGEST });
    oci('no-ref', 'group/app/manifests');
    oci('project-repo', 'group/app', { tag: 'main' });
    oci('deeper', 'group/app/deploy/prod', { tag: 'main' });
    oci('sibling', 'group/app-other/manifests', { tag: 'main' });
    h.kube.putOciRepository('oci', 'elsewhere', { url: 'oci://ghcr.io/group/app/manifests', ref: { tag: 'main' } });

    await h.startAgent({ gatewayUrl: peer.url, agentToken: TOKEN });
    conn = await peer.connection(0);
    await conn.nextFrame('subscribe');
  });

  afterAll(async () => {
    await h.close();
    await peer.close();
  });

  it('subscribes to the Git projects and every two-or-more-segment prefix of each OCI repository', () => {
    expect(conn.framesOf('subscribe')[0]?.projects).toEqual([
      'group/app',
      'group/app-other',
      'group/app-other/manifests',
      'group/app/deploy',
      'group/app/deploy/prod',
      'group/app/manifests',
      'group/other',
    ]);
  });

  it.each<[string, PushFrame, string[]]>([
    ['a push to refs/heads/release: name', pushOf('group/app', 'refs/heads/release'), ['git/by-name']],
    ['a new tag v2.0.0: semver', pushOf('group/app', 'refs/tags/v2.0.0'), ['git/by-semver']],
    ['the tag v1.2.3: semver and tag', pushOf('group/app', 'refs/tags/v1.2.3'), ['git/by-semver', 'git/by-tag']],
    ['a push to main, the default branch: branch main only', pushOf('group/app', 'refs/heads/main', 'main'), ['git/by-branch']],
    ['a push to dev: the commit pinned on dev', pushOf('group/app', 'refs/heads/dev'), ['git/by-commit-and-branch']],
    ['a push to master: no ref, whatever the default branch', pushOf('group/app', 'refs/heads/master', 'main'), ['git/no-ref']],
    ['a push to a feature branch: nothing', pushOf('group/app', 'refs/heads/feature'), []],
    ['a push to another project main: only its source', pushOf('group/other', 'refs/heads/main'), ['git/other-project']],
  ])('Git: %s', async (_what, frame, expected) => {
    expect(await annotatedBy(frame)).toEqual(expected);
  });

  it.each<[string, ArtifactFrame, string[]]>([
    [
      'a pipeline of group/app: every OCIRepository of the project and under it',
      pipelineOf('group/app'),
      ['oci/deeper', 'oci/digest', 'oci/no-ref', 'oci/project-repo', 'oci/semver', 'oci/tag-main'],
    ],
    ['a pipeline of group/app-other: its own only', pipelineOf('group/app-other'), ['oci/sibling']],
    ['a pipeline of a project with no OCIRepository: nothing', pipelineOf('group/other'), []],
    ['tag main on group/app/manifests: tag main and semver', registryOf('group/app/manifests', 'main'), ['oci/semver', 'oci/tag-main']],
    ['tag latest: no ref and semver', registryOf('group/app/manifests', 'latest'), ['oci/no-ref', 'oci/semver']],
    ['tag 1.4.0: semver only', registryOf('group/app/manifests', '1.4.0'), ['oci/semver']],
    ['tag main on the project repository: exactly that repository', registryOf('group/app', 'main'), ['oci/project-repo']],
    ['tag main on a deeper repository', registryOf('group/app/deploy/prod', 'main'), ['oci/deeper']],
    ['a repository case-insensitively', registryOf('Group/App/Manifests', 'v9'), ['oci/semver']],
    ['a repository nothing follows: nothing', registryOf('group/app/other', 'main'), []],
  ])('OCI: %s', async (_what, frame, expected) => {
    expect(await annotatedBy(frame)).toEqual(expected);
  });

  it('never annotated the sources on other hosts, nor the digest-pinned one for a tag', () => {
    const touched = new Set(h.kube.sourcePatches.map((p) => `${p.namespace}/${p.name}`));
    expect(touched.has('oci/elsewhere')).toBe(false);
    expect(h.kube.sourcePatches.every((p) => p.failed === undefined)).toBe(true);
    expect(conn.framesOf('ack').map((a) => a.eventId)).toEqual(
      Array.from({ length: eventIds - 100 }, (_, i) => String(101 + i)),
    );
  });
});

describe('without KASGATE_REGISTRY_HOST', () => {
  afterAll(async () => {
    await h.close();
    await peer.close();
  });

  it('manages no OCIRepository, and does not need the OCIRepository CRD', async () => {
    h = await createHarness({ crds: { ociRepositories: false } });
    peer = await new ProtocolPeer(TOKEN).start();
    h.kube.putGitRepository('git', 'app', { url: 'https://gitlab.example.com/group/app.git', ref: { branch: 'main' } });
    h.kube.putOciRepository('oci', 'app', { url: 'oci://registry.example.com/group/app/manifests' });
    const agent = await h.startAgent({ gatewayUrl: peer.url, agentToken: TOKEN, registryHost: undefined });
    conn = await peer.connection(0);
    expect((await conn.nextFrame('subscribe')).projects).toEqual(['group/app']);
    expect(await annotatedBy(pipelineOf('group/app'))).toEqual([]);
    expect(await annotatedBy(pushOf('group/app', 'refs/heads/main'))).toEqual(['git/app']);
    expect(agent.status()).toMatchObject({ ready: true, managedSources: { GitRepository: 1, OCIRepository: 0 } });
  });
});
