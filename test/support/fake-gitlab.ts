/**
 * A GitLab API stand-in: a real HTTP server on GitLab's paths (/api/v4/...), written from
 * GitLab's docs (doc/api/commits.md "Set the pipeline status of a commit", doc/api/rest
 * authentication) and its commit status service (app/services/ci/create_commit_status_service.rb).
 *
 * - Auth as GitLab: `PRIVATE-TOKEN: <token>` or `Authorization: Bearer <token>`; anything else
 *   is 401 `{"message":"401 Unauthorized"}`.
 * - Projects by numeric id or URL-encoded path; unknown ones are 404 `{"message":"404 Project Not Found"}`.
 * - `POST /projects/:id/statuses/:sha` (parameters in the query, a form or JSON), recorded in
 *   `statuses`, with GitLab's state machine per (sha, name, ref): a second `running` on a running
 *   status is 400 "Cannot transition status via :run from :running", a state after a finished
 *   one starts a new status. `GET /projects/:id/repository/commits/:sha/statuses` lists them.
 * - Scripted trouble: `script()` answers the next matching requests with a status (429 with
 *   Retry-After, 5xx…) before they reach the handler; `hang` holds requests open until `release()`.
 *
 * Other helpers extend it: `route(method, pattern, handler)` adds an endpoint (repository
 * files, groups, deploy tokens…) with the same auth, project lookup, scripts and request log.
 * `files` (fake-gitlab-files.ts): the Projects API's project (with visibility) and repository files.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomUUID } from 'node:crypto';
import { FakeDeployTokens } from './fake-gitlab-deploy-tokens.js';
import { FakeGitLabFiles } from './fake-gitlab-files.js';

export interface FakeProject {
  id: number;
  path: string;
  defaultBranch: string;
}

export interface RecordedStatus {
  id: number;
  projectId: number;
  sha: string;
  name: string;
  state: string;
  ref: string | null;
  targetUrl: string | null;
  description: string | null;
  /** Epoch ms when it was recorded. */
  at: number;
}

export interface RecordedRequest {
  method: string;
  path: string;
  /** Epoch ms when it arrived. */
  at: number;
  /** What was answered (0 while hanging). */
  status: number;
  auth: 'private-token' | 'bearer' | 'none';
}

export interface ScriptedAnswer {
  /** Only requests this matches (default: all). */
  match?: (method: string, path: string) => boolean;
  status: number;
  headers?: Record<string, string>;
  body?: unknown;
  /** How many requests it answers (default 1; Infinity until cleared). */
  times?: number;
}

export interface RouteContext {
  req: http.IncomingMessage;
  params: Record<string, string>;
  query: URLSearchParams;
  /** Query parameters, then the form or JSON body, as GitLab's Grape merges them. */
  input: Record<string, unknown>;
  /** The project named by `:id`, if the pattern has one and it exists. */
  project: FakeProject | undefined;
}

export interface RouteAnswer {
  status: number;
  body?: unknown;
  headers?: Record<string, string>;
}

type Handler = (ctx: RouteContext) => RouteAnswer | Promise<RouteAnswer>;

interface Route {
  method: string;
  pattern: RegExp;
  names: string[];
  handler: Handler;
}

const STATES = new Set(['pending', 'running', 'success', 'failed', 'canceled', 'skipped']);
const ACTIVE = new Set(['pending', 'running']);

export class FakeGitLab {
  readonly token: string;
  readonly projects = new Map<number, FakeProject>();
  readonly statuses: RecordedStatus[] = [];
  readonly requests: RecordedRequest[] = [];
  /** Projects' visibility and repository files (fake-gitlab-files.ts). */
  readonly files: FakeGitLabFiles;
  /** Hold every request open (no answer) until `release()` or `hang = false`. */
  hang = false;
  /** Hold open only the requests this matches (a GitLab slow for one project), until `release()`. */
  hangWhen: ((method: string, path: string) => boolean) | undefined;
  url = '';
  private readonly routes: Route[] = [];
  private readonly scripts: (ScriptedAnswer & { left: number })[] = [];
  private readonly held = new Set<() => void>();
  private server: http.Server | undefined;
  private nextStatusId = 1;
  /** Project and group deploy tokens (fake-gitlab-deploy-tokens.ts). */
  readonly deployTokens = new FakeDeployTokens(this);

  constructor(options: { token?: string } = {}) {
    this.token = options.token ?? `glpat-${randomUUID()}`;
    this.route('POST', '/projects/:id/statuses/:sha', (ctx) => this.postStatus(ctx));
    this.route('GET', '/projects/:id/repository/commits/:sha/statuses', (ctx) => ({
      status: 200,
      body: this.statuses.filter((s) => s.projectId === ctx.project!.id && s.sha === ctx.params.sha).map((s) => this.entity(s)),
    }));
    this.route('GET', '/projects/:id', (ctx) => ({
      status: 200,
      body: { id: ctx.project!.id, path_with_namespace: ctx.project!.path, default_branch: ctx.project!.defaultBranch },
    }));
    this.files = new FakeGitLabFiles(this);
  }

  addProject(project: FakeProject): FakeProject {
    this.projects.set(project.id, project);
    return project;
  }

  /** Adds an endpoint under /api/v4 (`:name` segments are parameters; `:id` is looked up as a project). */
  route(method: string, path: string, handler: Handler): void {
    const names: string[] = [];
    const pattern = new RegExp(`^${path.replace(/:([a-z_]+)/g, (_m, name: string) => (names.push(name), '([^/]+)'))}$`);
    // Later routes are more specific additions: they are tried first.
    this.routes.unshift({ method, pattern, names, handler });
  }

  /** Answers the next matching requests with `answer` instead of the real handler. */
  script(answer: ScriptedAnswer): void {
    this.scripts.push({ ...answer, left: answer.times ?? 1 });
  }

  clearScripts(): void {
    this.scripts.length = 0;
  }

  /** Lets the held requests through (they are then handled), and stops holding new ones. */
  release(): void {
    this.hang = false;
    this.hangWhen = undefined;
    for (const go of this.held) go();
    this.held.clear();
  }

  statusesOf(sha: string): RecordedStatus[] {
    return this.statuses.filter((s) => s.sha === sha);
  }

  async start(): Promise<this> {
    this.server = http.createServer((req, res) => void this.handle(req, res));
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  async close(): Promise<void> {
    this.release();
    this.server?.closeAllConnections();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }

  private findProject(id: string): FakeProject | undefined {
    const decoded = decodeURIComponent(id);
    if (/^\d+$/.test(decoded)) return this.projects.get(Number(decoded));
    return [...this.projects.values()].find((p) => p.path.toLowerCase() === decoded.toLowerCase());
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://fake');
    const method = req.method ?? 'GET';
    const record: RecordedRequest = { method, path: url.pathname, at: Date.now(), status: 0, auth: 'none' };
    this.requests.push(record);
    const send = (status: number, body: unknown, headers: Record<string, string> = {}) => {
      record.status = status;
      if (res.writableEnded || res.destroyed) return;
      res.writeHead(status, { 'content-type': 'application/json', ...headers });
      res.end(body === undefined ? '' : JSON.stringify(body));
    };
    const raw = await new Promise<string>((resolve) => {
      let text = '';
      req.on('data', (chunk: Buffer) => (text += chunk.toString()));
      req.on('end', () => resolve(text));
      req.on('error', () => resolve(text));
    });
    if (this.hang || this.hangWhen?.(req.method ?? 'GET', (req.url ?? '/').split('?')[0]!)) {
      await new Promise<void>((resolve) => {
        this.held.add(resolve);
        res.on('close', () => {
          this.held.delete(resolve);
          resolve();
        });
      });
      if (res.destroyed) return;
    }

    const privateToken = req.headers['private-token'];
    const bearer = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? '')?.[1];
    record.auth = privateToken !== undefined ? 'private-token' : bearer !== undefined ? 'bearer' : 'none';
    if ((privateToken ?? bearer) !== this.token) return send(401, { message: '401 Unauthorized' });

    const path = url.pathname.replace(/^\/api\/v4/, '');
    const scripted = this.scripts.find((s) => s.left > 0 && (!s.match || s.match(method, path)));
    if (scripted) {
      scripted.left--;
      if (scripted.left <= 0) this.scripts.splice(this.scripts.indexOf(scripted), 1);
      return send(scripted.status, scripted.body ?? { message: `${scripted.status} (scripted)` }, scripted.headers);
    }

    for (const route of this.routes) {
      if (route.method !== method) continue;
      const match = route.pattern.exec(path);
      if (!match) continue;
      const params = Object.fromEntries(route.names.map((name, i) => [name, decodeURIComponent(match[i + 1]!)]));
      const project = params.id !== undefined ? this.findProject(match[route.names.indexOf('id') + 1]!) : undefined;
      if (params.id !== undefined && !project) return send(404, { message: '404 Project Not Found' });
      let input: Record<string, unknown> = Object.fromEntries(url.searchParams);
      const type = req.headers['content-type'] ?? '';
      if (raw && type.includes('json')) {
        try {
          input = { ...input, ...(JSON.parse(raw) as Record<string, unknown>) };
        } catch {
          return send(400, { error: 'body is not valid JSON' });
        }
      } else if (raw && type.includes('x-www-form-urlencoded')) {
        input = { ...input, ...Object.fromEntries(new URLSearchParams(raw)) };
      }
      const answer = await route.handler({ req, params, query: url.searchParams, input, project });
      return send(answer.status, answer.body, answer.headers);
    }
    send(404, { error: '404 Not Found' });
  }

  private postStatus(ctx: RouteContext): RouteAnswer {
    const { input, params } = ctx;
    const project = ctx.project!;
    const state = typeof input.state === 'string' ? input.state : undefined;
    if (!state) return { status: 400, body: { error: 'state is missing' } };
    if (!STATES.has(state)) return { status: 400, body: { error: 'state does not have a valid value' } };
    if (!/^[0-9a-f]{7,40}$/.test(params.sha!)) return { status: 404, body: { message: '404 Commit Not Found' } };
    const text = (key: string) => (typeof input[key] === 'string' ? (input[key] as string) : null);
    const name = text('name') ?? text('context') ?? 'default';
    const ref = text('ref') ?? project.defaultBranch;
    for (const field of ['ref', 'target_url', 'description'] as const) {
      if ((text(field)?.length ?? 0) > 255) return { status: 400, body: { message: { [field]: ['is too long (maximum is 255 characters)'] } } };
    }
    const current = this.statuses.findLast((s) => s.projectId === project.id && s.sha === params.sha && s.name === name && s.ref === ref);
    if (current && ACTIVE.has(current.state) && current.state === state) {
      const verb = state === 'running' ? 'run' : 'enqueue';
      return { status: 400, body: { message: `Cannot transition status via :${verb} from :${current.state}` } };
    }
    const status: RecordedStatus = {
      id: current && ACTIVE.has(current.state) ? current.id : this.nextStatusId++,
      projectId: project.id,
      sha: params.sha!,
      name,
      state,
      ref,
      targetUrl: text('target_url'),
      description: text('description'),
      at: Date.now(),
    };
    this.statuses.push(status);
    return { status: 201, body: this.entity(status) };
  }

  private entity(s: RecordedStatus) {
    return {
      id: s.id,
      sha: s.sha,
      ref: s.ref,
      status: s.state,
      name: s.name,
      target_url: s.targetUrl,
      description: s.description,
      created_at: new Date(s.at).toISOString(),
      started_at: null,
      finished_at: ACTIVE.has(s.state) ? null : new Date(s.at).toISOString(),
      allow_failure: false,
      coverage: null,
      author: { id: 1, username: 'kasgate-bot', name: 'kasgate', state: 'active' },
    };
  }
}

export async function startFakeGitLab(options: { token?: string } = {}): Promise<FakeGitLab> {
  return new FakeGitLab(options).start();
}
