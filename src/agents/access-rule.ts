/**
 * The access rule: may an agent receive a push of a project? Pure functions, no I/O.
 *
 * An agent may receive a push of project P iff
 *   1. P is the agent's configuration project, or
 *   2. P was public (visibility_level 20) in that very push, or
 *   3. an admin grant names P, or a group P sits under (on path-segment boundaries), or
 *   4. the agent's config file lists P, or a group P sits under, in `flux_access`, and P is under
 *      the config project's top-level group (checked here again, so that a changed config project
 *      never carries a file's entries into another top-level group).
 * Paths compare case-insensitively. Anything uncertain (unknown visibility, odd paths) fails closed.
 */

export const VISIBILITY_PUBLIC = 20;

export interface AgentAccess {
  agentId: string;
  /** Lower-cased configuration project path. */
  configProject: string;
  /** Lower-cased project paths granted by an admin. */
  grantedProjects: ReadonlySet<string>;
  /** Lower-cased group paths granted by an admin (well-formed ones only). */
  grantedGroups: readonly string[];
  /** Lower-cased project paths from the config file's flux_access (rule 4), under the config project's top-level group. */
  fileProjects: ReadonlySet<string>;
  /** Lower-cased group paths from the config file's flux_access (rule 4), likewise. */
  fileGroups: readonly string[];
}

/** What rule 4 reads of the accepted flux_access (src/agents/config-file/flux-access.ts). */
export interface FileGrants {
  entries: readonly { kind: 'project' | 'group'; path: string }[];
}

const MAX_PATH_LENGTH = 1024;
/** Segments separated by single slashes; no whitespace or control characters; no `.` or `..` segment. */
const WELL_FORMED = /^[^/\s\p{Cc}]+(\/[^/\s\p{Cc}]+)*$/u;

/** The comparison form of a path. Never trims: a path with stray whitespace is odd, not equal. */
export function normalizePath(path: string): string {
  return path.toLowerCase();
}

/** A path the rule can reason about. Anything else matches nothing. */
export function isWellFormedPath(path: string): boolean {
  if (path.length === 0 || path.length > MAX_PATH_LENGTH || !WELL_FORMED.test(path)) return false;
  return path.split('/').every((segment) => segment !== '.' && segment !== '..');
}

/** The first segment of a path: GitLab's top-level group (or user namespace). */
export const topLevelOf = (path: string): string => normalizePath(path).split('/')[0]!;

/** True when P is the config project's top-level group or lies under it: the only place rule 4 may open. */
export function underTopLevelGroup(path: string, configProject: string): boolean {
  const lower = normalizePath(path);
  if (!isWellFormedPath(lower) || !isWellFormedPath(configProject)) return false;
  const top = topLevelOf(configProject);
  return lower === top || lower.startsWith(`${top}/`);
}

export function buildAccess(
  agentId: string,
  configProject: string,
  grants: { projects: string[]; groups: string[] },
  file?: FileGrants | null,
): AgentAccess {
  const fromFile = (file?.entries ?? []).filter((e) => underTopLevelGroup(e.path, configProject));
  return {
    agentId,
    configProject: normalizePath(configProject),
    grantedProjects: new Set(grants.projects.map(normalizePath)),
    grantedGroups: grants.groups.map(normalizePath).filter(isWellFormedPath),
    fileProjects: new Set(fromFile.filter((e) => e.kind === 'project').map((e) => normalizePath(e.path))),
    fileGroups: fromFile.filter((e) => e.kind === 'group').map((e) => normalizePath(e.path)),
  };
}

/** True when the agent sees P whatever P's visibility: its config project, an admin grant, or its config file's flux_access. */
export function isGranted(access: AgentAccess, projectPath: string): boolean {
  const path = normalizePath(projectPath);
  if (!isWellFormedPath(path)) return false;
  if (path === access.configProject || access.grantedProjects.has(path) || access.fileProjects.has(path)) return true;
  return (
    access.grantedGroups.some((group) => path.startsWith(`${group}/`)) ||
    (underTopLevelGroup(path, access.configProject) && access.fileGroups.some((group) => path.startsWith(`${group}/`)))
  );
}

export function isPublic(visibility: number | null | undefined): boolean {
  return visibility === VISIBILITY_PUBLIC;
}

/** The rule itself, checked per event with the visibility that event carried. */
export function mayReceive(access: AgentAccess, event: { projectPath: string; visibility: number | null }): boolean {
  if (!isWellFormedPath(event.projectPath)) return false;
  return isPublic(event.visibility) || isGranted(access, event.projectPath);
}

/**
 * What a `subscribed` frame (or the admin API) says about a watched path. `granted` only when
 * events are known to flow; never anything that would tell a private project exists.
 */
export function subscriptionAccess(
  access: AgentAccess,
  projectPath: string,
  lastKnownVisibility: number | null | undefined,
): 'granted' | 'unverified' {
  if (!isWellFormedPath(projectPath)) return 'unverified';
  return isGranted(access, projectPath) || isPublic(lastKnownVisibility) ? 'granted' : 'unverified';
}
