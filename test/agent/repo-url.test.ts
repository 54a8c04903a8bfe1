import { describe, expect, it } from 'vitest';
import {
  gitlabLocation,
  parseRegistryHost,
  projectPathFromRepoUrl,
  repositoryFromOciUrl,
  repositoryProjectCandidates,
} from '../../src/agent/repo-url.js';

const gitlab = gitlabLocation('https://gitlab.example.com');
const underPath = gitlabLocation('https://example.com/gitlab/');

describe('GitRepository URL → GitLab project path', () => {
  it.each([
    ['https://gitlab.example.com/group/app.git', 'group/app'],
    ['https://gitlab.example.com/group/app', 'group/app'],
    ['https://gitlab.example.com/group/sub/deeper/app.git', 'group/sub/deeper/app'],
    ['https://gitlab.example.com/group/app/', 'group/app'],
    ['https://gitlab.example.com/group/app.git/', 'group/app'],
    ['http://gitlab.example.com/group/app.git', 'group/app'],
    ['https://gitlab.example.com:8443/group/app.git', 'group/app'],
    ['https://deploy-token:secret@gitlab.example.com/group/app.git', 'group/app'],
    ['HTTPS://GitLab.Example.COM/Group/App.GIT', 'group/app'],
    ['https://gitlab.example.com/group/my%20app.git', undefined],
    ['https://gitlab.example.com/group/app.js.git', 'group/app.js'],
    ['ssh://git@gitlab.example.com/group/app.git', 'group/app'],
    ['ssh://git@gitlab.example.com:2222/group/sub/app.git', 'group/sub/app'],
    ['ssh://gitlab.example.com/group/app', 'group/app'],
    ['ssh://git@GITLAB.example.com/Group/App.git', 'group/app'],
    ['SSH://git@gitlab.example.com/group/app.git', 'group/app'],
    ['  https://gitlab.example.com/group/app.git  ', 'group/app'],
  ])('%s → %s', (url, expected) => {
    expect(projectPathFromRepoUrl(url, gitlab)).toBe(expected);
  });

  it.each([
    ['another host', 'https://github.com/group/app.git'],
    ['a host that only ends like ours', 'https://evil-gitlab.example.com/group/app.git'],
    ['a host that only starts like ours', 'https://gitlab.example.com.evil.io/group/app.git'],
    ['ssh on another host', 'ssh://git@github.com/group/app.git'],
    // Flux's CRD admits only ^(http|https|ssh)://: these never reach a cluster, and are not managed.
    ['scp-like (rejected by Flux)', 'git@gitlab.example.com:group/app.git'],
    ['scp-like without a user (rejected by Flux)', 'gitlab.example.com:group/app.git'],
    ['git+ssh (rejected by Flux)', 'git+ssh://git@gitlab.example.com/group/app.git'],
    ['ssh+git (rejected by Flux)', 'ssh+git://git@gitlab.example.com/group/app.git'],
    ['git:// (rejected by Flux)', 'git://gitlab.example.com/group/app.git'],
    ['no namespace', 'https://gitlab.example.com/app.git'],
    ['only the host', 'https://gitlab.example.com/'],
    ['a GitLab UI route', 'https://gitlab.example.com/group/app/-/tree/main'],
    ['dot segments', 'https://gitlab.example.com/group/../app.git'],
    ['an unsupported scheme', 'ftp://gitlab.example.com/group/app.git'],
    ['an OCI URL', 'oci://gitlab.example.com/group/app'],
    ['a local path', '/srv/git/group/app.git'],
    ['garbage', 'not a url'],
    ['empty', ''],
  ])('rejects %s', (_what, url) => {
    expect(projectPathFromRepoUrl(url, gitlab)).toBeUndefined();
  });

  it.each([
    ['https://example.com/gitlab/group/app.git', 'group/app'],
    ['https://example.com/GitLab/group/app.git', 'group/app'],
    ['https://example.com/group/app.git', undefined],
    ['https://example.com/gitlabx/group/app.git', undefined],
    ['ssh://git@example.com/group/app.git', 'group/app'],
  ])('with GitLab under a relative URL root: %s → %s', (url, expected) => {
    expect(projectPathFromRepoUrl(url, underPath)).toBe(expected);
  });
});

describe('KASGATE_REGISTRY_HOST', () => {
  it.each([
    ['registry.example.com', 'registry.example.com'],
    ['Registry.Example.com', 'registry.example.com'],
    ['gitlab.example.com:5050', 'gitlab.example.com:5050'],
    ['registry.example.com:443', 'registry.example.com'],
    ['localhost:5000', 'localhost:5000'],
    ['[::1]:5000', '[::1]:5000'],
    ['https://registry.example.com', undefined],
    ['registry.example.com/group', undefined],
    ['registry.example.com:99999', undefined],
    ['-bad.example.com', undefined],
    ['', undefined],
  ])('%s → %s', (value, expected) => {
    expect(parseRegistryHost(value)).toBe(expected);
  });
});

describe('OCIRepository URL → registry repository', () => {
  const registry = 'registry.example.com';
  const withPort = 'gitlab.example.com:5050';

  it.each([
    ['oci://registry.example.com/group/app', registry, 'group/app'],
    ['oci://registry.example.com/group/app/manifests', registry, 'group/app/manifests'],
    ['oci://registry.example.com/group/sub/app/deploy/prod', registry, 'group/sub/app/deploy/prod'],
    ['OCI://Registry.Example.com/Group/App', registry, 'group/app'],
    ['oci://registry.example.com:443/group/app', registry, 'group/app'],
    ['oci://registry.example.com/group/app/', registry, 'group/app'],
    ['oci://registry.example.com/group/my_app.v2/manifests', registry, 'group/my_app.v2/manifests'],
    ['oci://gitlab.example.com:5050/group/app/manifests', withPort, 'group/app/manifests'],
    ['  oci://registry.example.com/group/app  ', registry, 'group/app'],
  ])('%s (registry %s) → %s', (url, host, expected) => {
    expect(repositoryFromOciUrl(url, host)).toBe(expected);
  });

  it.each([
    ['another registry', 'oci://ghcr.io/group/app', registry],
    ['the same host on another port', 'oci://gitlab.example.com/group/app', withPort],
    ['a port where the registry has none', 'oci://registry.example.com:5050/group/app', registry],
    ['no namespace', 'oci://registry.example.com/app', registry],
    ['a tag in the URL (Flux refuses it)', 'oci://registry.example.com/group/app:v1', registry],
    ['a digest in the URL (Flux refuses it)', 'oci://registry.example.com/group/app@sha256:abc', registry],
    ['an empty segment', 'oci://registry.example.com/group//app', registry],
    ['a Git URL', 'https://registry.example.com/group/app', registry],
    ['no path', 'oci://registry.example.com', registry],
    ['garbage', 'not a url', registry],
  ])('rejects %s', (_what, url, host) => {
    expect(repositoryFromOciUrl(url, host)).toBeUndefined();
  });

  it('subscribes to every prefix of two or more segments', () => {
    expect(repositoryProjectCandidates('group/app/manifests')).toEqual(['group/app', 'group/app/manifests']);
    expect(repositoryProjectCandidates('group/app')).toEqual(['group/app']);
    expect(repositoryProjectCandidates('a/b/c/d')).toEqual(['a/b', 'a/b/c', 'a/b/c/d']);
  });
});
