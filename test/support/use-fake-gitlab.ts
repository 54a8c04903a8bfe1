/** A GitLab stand-in for the enclosing describe block, and the gateway environment that points at it. */
import { afterAll, beforeAll } from 'vitest';
import { startFakeGitLab, type FakeGitLab } from './fake-gitlab.js';

export function useFakeGitLab(): { readonly gitlab: FakeGitLab; env(extra?: Record<string, string>): () => Record<string, string> } {
  let current: FakeGitLab | undefined;
  beforeAll(async () => {
    current = await startFakeGitLab();
  });
  afterAll(async () => {
    await current?.close();
  });
  return {
    get gitlab() {
      if (!current) throw new Error('the GitLab stand-in is used outside its describe block');
      return current;
    },
    env: (extra = {}) => () => ({ KASGATE_GITLAB_URL: current!.url, KASGATE_GITLAB_TOKEN: current!.token, ...extra }),
  };
}
