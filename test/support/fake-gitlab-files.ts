/**
 * The GitLab stand-in's projects and repository files, from GitLab's API docs:
 *  - `GET /projects/:id` (doc/api/projects.md "Get a single project"): id, path_with_namespace,
 *    default_branch, visibility ("private", "internal", "public"), namespace; unknown projects
 *    404 `{"message":"404 Project Not Found"}` (the stand-in's project lookup);
 *  - `GET /projects/:id/repository/files/:file_path?ref=` (doc/api/repository_files.md "Get file
 *    from repository"): file_name, file_path, size, encoding "base64", content, content_sha256,
 *    ref, blob_id, commit_id, last_commit_id, execute_filemode; `ref` is required (400
 *    `{"error":"ref is missing"}`), `HEAD` means the default branch; a missing file (or branch)
 *    is 404 `{"message":"404 File Not Found"}`.
 * Files live per project and branch; `put` makes a new commit sha each time, as a push would.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { FakeGitLab, RouteContext, RouteAnswer } from './fake-gitlab.js';

export type Visibility = 'private' | 'internal' | 'public';

interface StoredFile {
  content: Buffer;
  blobId: string;
  commitId: string;
}

const sha1 = (data: Buffer | string) => createHash('sha1').update(data).digest('hex');

export class FakeGitLabFiles {
  /** Project id → visibility (default private). */
  readonly visibility = new Map<number, Visibility>();
  private readonly files = new Map<string, StoredFile>();
  private readonly heads = new Map<string, string>();

  constructor(private readonly gitlab: FakeGitLab) {
    gitlab.route('GET', '/projects/:id', (ctx) => this.project(ctx));
    gitlab.route('GET', '/projects/:id/repository/files/:file_path', (ctx) => this.file(ctx));
  }

  /** Writes a file on a branch (default: the project's default branch); returns the new commit sha. */
  put(projectId: number, filePath: string, content: string, branch?: string): string {
    const ref = branch ?? this.projectById(projectId).defaultBranch;
    const commitId = sha1(randomBytes(16));
    const data = Buffer.from(content, 'utf8');
    // Git's blob id: sha1 of "blob <size>\0<content>".
    const blobId = sha1(Buffer.concat([Buffer.from(`blob ${data.length}\0`), data]));
    this.files.set(`${projectId}\n${ref}\n${filePath}`, { content: data, blobId, commitId });
    this.heads.set(`${projectId}\n${ref}`, commitId);
    return commitId;
  }

  remove(projectId: number, filePath: string, branch?: string): void {
    const ref = branch ?? this.projectById(projectId).defaultBranch;
    this.files.delete(`${projectId}\n${ref}\n${filePath}`);
  }

  private projectById(id: number) {
    const project = this.gitlab.projects.get(id);
    if (!project) throw new Error(`no project ${id} in the GitLab stand-in`);
    return project;
  }

  private project(ctx: RouteContext): RouteAnswer {
    const p = ctx.project!;
    const segments = p.path.split('/');
    return {
      status: 200,
      body: {
        id: p.id,
        name: segments.at(-1),
        path: segments.at(-1),
        path_with_namespace: p.path,
        default_branch: p.defaultBranch,
        visibility: this.visibility.get(p.id) ?? 'private',
        web_url: `${this.gitlab.url}/${p.path}`,
        namespace: { full_path: segments.slice(0, -1).join('/'), kind: 'group' },
        empty_repo: false,
      },
    };
  }

  private file(ctx: RouteContext): RouteAnswer {
    const p = ctx.project!;
    const ref = ctx.query.get('ref');
    if (!ref) return { status: 400, body: { error: 'ref is missing' } };
    const branch = ref === 'HEAD' ? p.defaultBranch : ref;
    const filePath = ctx.params.file_path!;
    const stored = this.files.get(`${p.id}\n${branch}\n${filePath}`);
    if (!stored) return { status: 404, body: { message: '404 File Not Found' } };
    return {
      status: 200,
      body: {
        file_name: filePath.split('/').at(-1),
        file_path: filePath,
        size: stored.content.length,
        encoding: 'base64',
        content: stored.content.toString('base64'),
        content_sha256: createHash('sha256').update(stored.content).digest('hex'),
        ref: branch,
        blob_id: stored.blobId,
        commit_id: this.heads.get(`${p.id}\n${branch}`) ?? stored.commitId,
        last_commit_id: stored.commitId,
        execute_filemode: false,
      },
    };
  }
}
