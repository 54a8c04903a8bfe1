import { describe, expect, it } from 'vitest';
import { gitlabLocation, projectPathFromRepoUrl } from '../../src/agent/repo-url.js';

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
    ['git@gitlab.example.com:group/app.git', 'group/app'],
    ['git@gitlab.example.com:group/sub/app', 'group/sub/app'],
    ['git@gitlab.example.com:/group/app.git', 'group/app'],
    ['gitlab.example.com:group/app.git', 'group/app'],
    ['Git@GitLab.Example.com:Group/App.git', 'group/app'],
    ['  https://gitlab.example.com/group/app.git  ', 'group/app'],
  ])('%s → %s', (url, expected) => {
    expect(projectPathFromRepoUrl(url, gitlab)).toBe(expected);
  });

  it.each([
    ['another host', 'https://github.com/group/app.git'],
    ['a host that only ends like ours', 'https://evil-gitlab.example.com/group/app.git'],
    ['a host that only starts like ours', 'https://gitlab.example.com.evil.io/group/app.git'],
    ['scp-like on another host', 'git@github.com:group/app.git'],
    ['ssh on another host', 'ssh://git@github.com/group/app.git'],
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
    ['git@example.com:group/app.git', 'group/app'],
    ['ssh://git@example.com/group/app.git', 'group/app'],
  ])('with GitLab under a relative URL root: %s → %s', (url, expected) => {
    expect(projectPathFromRepoUrl(url, underPath)).toBe(expected);
  });
});
