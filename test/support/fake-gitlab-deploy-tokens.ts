/**
 * Deploy tokens on the GitLab stand-in, from gitlabhq doc/api/deploy_tokens.md:
 * - `POST /projects/:id/deploy_tokens` and `POST /groups/:id/deploy_tokens` with `name` and
 *   `scopes` (required), `expires_at` (ISO 8601), `username` (default `gitlab+deploy-token-{n}`):
 *   201 with `id, name, username, expires_at, token, revoked, expired, scopes`. A missing
 *   parameter is 400 `{"error":"name is missing"}` (Grape's wording), an unknown scope
 *   400 `{"error":"scopes does not have a valid value"}`.
 * - `GET …/deploy_tokens` lists them (never the token), `GET …/deploy_tokens/:token_id` shows one.
 * - `DELETE …/deploy_tokens/:token_id`: 204; 404 `{"message":"404 Not Found"}` when unknown.
 * - Unknown groups are 404 `{"message":"404 Group Not Found"}`; a group exists when it was added or
 *   some project lies under it.
 * `works(token)` says whether Git over HTTPS would take the token (live, not expired).
 */
import type { FakeGitLab, RouteContext, RouteAnswer } from './fake-gitlab.js';
import { randomBytes } from 'node:crypto';

const SCOPES = new Set(['read_repository', 'read_registry', 'write_registry', 'read_package_registry', 'write_package_registry', 'read_virtual_registry', 'write_virtual_registry']);

export interface FakeDeployToken {
  id: number;
  owner: { kind: 'project'; id: number } | { kind: 'group'; path: string };
  name: string;
  username: string;
  expiresAt: string | null;
  token: string;
  scopes: string[];
  revoked: boolean;
  createdAt: number;
  revokedAt: number | null;
}

export class FakeDeployTokens {
  readonly tokens: FakeDeployToken[] = [];
  readonly groups = new Set<string>();
  private nextId = 1;

  constructor(private readonly gitlab: FakeGitLab) {
    gitlab.route('POST', '/projects/:id/deploy_tokens', (ctx) => this.create(ctx, { kind: 'project', id: ctx.project!.id }));
    gitlab.route('GET', '/projects/:id/deploy_tokens', (ctx) => this.list({ kind: 'project', id: ctx.project!.id }));
    gitlab.route('GET', '/projects/:id/deploy_tokens/:token_id', (ctx) => this.show({ kind: 'project', id: ctx.project!.id }, ctx));
    gitlab.route('DELETE', '/projects/:id/deploy_tokens/:token_id', (ctx) => this.remove({ kind: 'project', id: ctx.project!.id }, ctx));
    const group = (handler: (owner: FakeDeployToken['owner'], ctx: RouteContext) => RouteAnswer) => (ctx: RouteContext) => {
      const path = this.findGroup(ctx.params.group!);
      return path === undefined ? { status: 404, body: { message: '404 Group Not Found' } } : handler({ kind: 'group', path }, ctx);
    };
    gitlab.route('POST', '/groups/:group/deploy_tokens', group((owner, ctx) => this.create(ctx, owner)));
    gitlab.route('GET', '/groups/:group/deploy_tokens', group((owner) => this.list(owner)));
    gitlab.route('GET', '/groups/:group/deploy_tokens/:token_id', group((owner, ctx) => this.show(owner, ctx)));
    gitlab.route('DELETE', '/groups/:group/deploy_tokens/:token_id', group((owner, ctx) => this.remove(owner, ctx)));
  }

  addGroup(path: string): void {
    this.groups.add(path.toLowerCase());
  }

  /** Live tokens (not revoked), oldest first. */
  live(): FakeDeployToken[] {
    return this.tokens.filter((t) => !t.revoked);
  }

  /** Whether GitLab would accept this deploy token now (not revoked, not expired). */
  works(token: string): boolean {
    const found = this.tokens.find((t) => t.token === token);
    return !!found && !found.revoked && (found.expiresAt === null || Date.parse(found.expiresAt) > Date.now());
  }

  private findGroup(raw: string): string | undefined {
    const path = decodeURIComponent(raw).toLowerCase();
    if (this.groups.has(path)) return path;
    const under = [...this.gitlab.projects.values()].some((p) => p.path.toLowerCase().startsWith(`${path}/`));
    return under ? path : undefined;
  }

  private same(a: FakeDeployToken['owner'], b: FakeDeployToken['owner']): boolean {
    return a.kind === 'project' && b.kind === 'project' ? a.id === b.id : a.kind === 'group' && b.kind === 'group' && a.path === b.path;
  }

  private entity(t: FakeDeployToken) {
    return {
      id: t.id,
      name: t.name,
      username: t.username,
      expires_at: t.expiresAt,
      revoked: t.revoked,
      expired: t.expiresAt !== null && Date.parse(t.expiresAt) <= Date.now(),
      scopes: t.scopes,
    };
  }

  private create(ctx: RouteContext, owner: FakeDeployToken['owner']): RouteAnswer {
    const { input } = ctx;
    if (typeof input.name !== 'string' || input.name === '') return { status: 400, body: { error: 'name is missing' } };
    const scopes = typeof input.scopes === 'string' ? [input.scopes] : input.scopes;
    if (!Array.isArray(scopes) || scopes.length === 0) return { status: 400, body: { error: 'scopes is missing' } };
    if (!scopes.every((s) => typeof s === 'string' && SCOPES.has(s))) return { status: 400, body: { error: 'scopes does not have a valid value' } };
    let expiresAt: string | null = null;
    if (input.expires_at !== undefined && input.expires_at !== null && input.expires_at !== '') {
      const at = Date.parse(String(input.expires_at));
      if (Number.isNaN(at)) return { status: 400, body: { error: 'expires_at is invalid' } };
      expiresAt = new Date(at).toISOString();
    }
    const id = this.nextId++;
    const token: FakeDeployToken = {
      id,
      owner,
      name: input.name,
      username: typeof input.username === 'string' && input.username !== '' ? input.username : `gitlab+deploy-token-${id}`,
      expiresAt,
      token: `gldt-${randomBytes(15).toString('base64url')}`,
      scopes: scopes as string[],
      revoked: false,
      createdAt: Date.now(),
      revokedAt: null,
    };
    this.tokens.push(token);
    return { status: 201, body: { ...this.entity(token), token: token.token } };
  }

  private list(owner: FakeDeployToken['owner']): RouteAnswer {
    return { status: 200, body: this.tokens.filter((t) => this.same(t.owner, owner) && !t.revoked).map((t) => this.entity(t)) };
  }

  private find(owner: FakeDeployToken['owner'], ctx: RouteContext): FakeDeployToken | undefined {
    const id = Number(ctx.params.token_id);
    return this.tokens.find((t) => t.id === id && this.same(t.owner, owner) && !t.revoked);
  }

  private show(owner: FakeDeployToken['owner'], ctx: RouteContext): RouteAnswer {
    const found = this.find(owner, ctx);
    return found ? { status: 200, body: this.entity(found) } : { status: 404, body: { message: '404 Not Found' } };
  }

  private remove(owner: FakeDeployToken['owner'], ctx: RouteContext): RouteAnswer {
    const found = this.find(owner, ctx);
    if (!found) return { status: 404, body: { message: '404 Not Found' } };
    found.revoked = true;
    found.revokedAt = Date.now();
    return { status: 204 };
  }
}
