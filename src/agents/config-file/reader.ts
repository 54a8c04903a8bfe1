/**
 * Reads `.gitlab/agents/<agent name>/config.yaml` from the config project's default branch
 * through GitLab's API:
 *  - the default branch from the Projects API (gitlabhq doc/api/projects.md "Get a single
 *    project": `GET /projects/:id` → `default_branch`; 404 "404 Project Not Found");
 *  - the file from the Repository files API (doc/api/repository_files.md "Get file from
 *    repository": `GET /projects/:id/repository/files/:file_path?ref=` → base64 `content`,
 *    `blob_id`, `commit_id`; 404 "404 File Not Found").
 * Only 404s count as "missing"; anything retryable (429, 5xx, no answer) is "unavailable" and
 * leaves the last good config alone.
 */
import type { GitLabApi } from '../../gitlab/api/client.js';
import { isGitLabApiError } from '../../gitlab/api/errors.js';
import { MAX_FILE_BYTES } from './parse.js';

export const configFilePath = (agentName: string): string => `.gitlab/agents/${agentName}/config.yaml`;

export interface FileRead {
  kind: 'read';
  text: string;
  project: string;
  path: string;
  ref: string;
  blobId: string;
  commitId: string;
}

export type ReadOutcome =
  | FileRead
  /** GitLab answered: no such project, branch or file (or the file is unusable). */
  | { kind: 'missing'; message: string }
  /** GitLab did not answer usefully (429, 5xx, timeout, refused): try again later. */
  | { kind: 'unavailable'; message: string };

interface ProjectAnswer {
  default_branch?: string | null;
  empty_repo?: boolean;
}

interface FileAnswer {
  content?: string;
  encoding?: string;
  size?: number;
  blob_id?: string;
  commit_id?: string;
  last_commit_id?: string;
}

function classify(err: unknown, what: string): ReadOutcome {
  if (isGitLabApiError(err)) {
    if (err.status === 404) return { kind: 'missing', message: `${what} not found (GitLab answered 404)` };
    if (err.status === 401 || err.status === 403) return { kind: 'missing', message: `GitLab refused to show ${what} (${err.status}); check KASGATE_GITLAB_TOKEN's scope` };
    if (!err.retryable) return { kind: 'missing', message: `GitLab refused to show ${what}: ${err.status}` };
    return { kind: 'unavailable', message: `GitLab unavailable while reading ${what}: ${err.status ?? 'no answer'}` };
  }
  return { kind: 'unavailable', message: `could not read ${what}: ${(err as Error).message}` };
}

export async function readConfigFile(api: GitLabApi, configProject: string, agentName: string): Promise<ReadOutcome> {
  const path = configFilePath(agentName);
  let project: ProjectAnswer;
  try {
    project = (await api.projects.show(configProject)) as ProjectAnswer;
  } catch (err) {
    return classify(err, `the config project ${configProject}`);
  }
  const ref = project.default_branch;
  if (!ref) return { kind: 'missing', message: `the config project ${configProject} has no default branch (empty repository?)` };
  let file: FileAnswer;
  try {
    file = (await api.repositoryFiles.show(configProject, path, ref)) as FileAnswer;
  } catch (err) {
    return classify(err, `${path} on ${configProject}@${ref}`);
  }
  if ((file.size ?? 0) > MAX_FILE_BYTES) return { kind: 'missing', message: `${path} is over ${MAX_FILE_BYTES} bytes` };
  const content = file.content ?? '';
  const text = file.encoding === 'base64' ? Buffer.from(content, 'base64').toString('utf8') : content;
  return {
    kind: 'read',
    text,
    project: configProject,
    path,
    ref,
    blobId: file.blob_id ?? '',
    commitId: file.commit_id ?? file.last_commit_id ?? '',
  };
}
