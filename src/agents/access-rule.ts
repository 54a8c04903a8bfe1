/**
 * The access rule: may an agent receive a push of a project? Pure functions, no I/O.
 *
 * An agent may receive a push of project P iff
 *   1. P is the agent's configuration project, or
 *   2. P was public (visibility_level 20) in that very push, or
 *   3. an admin grant names P, or a group P sits under (on path-segment boundaries).
 * Paths compare case-insensitively. Anything uncertain (unknown visibility, odd paths) fails closed.
 */

export const VISIBILITY_PUBLIC = 20;

export interface AgentAccess {
  agentId: string;
  /** Lower-cased configuration project path. */
  configProject: string;
  /** Lower-cased project paths granted by an admin. */
  grantedProjects: ReadonlySet<string>;
  /** Lower-cased group paths granted by an admin. */
  grantedGroups: readonly string[];
}

export function normalizePath(path: string): string {
  return path.trim().toLowerCase();
}

export function buildAccess(agentId: string, configProject: string, grants: { projects: string[]; groups: string[] }): AgentAccess {
  return {
    agentId,
    configProject: normalizePath(configProject),
    grantedProjects: new Set(grants.projects.map(normalizePath)),
    grantedGroups: grants.groups.map(normalizePath),
  };
}

/** True when the agent sees P whatever P's visibility: its config project or an admin grant. */
export function isGranted(access: AgentAccess, projectPath: string): boolean {
  const path = normalizePath(projectPath);
  if (path === '') return false;
  if (path === access.configProject || access.grantedProjects.has(path)) return true;
  return access.grantedGroups.some((group) => group !== '' && path.startsWith(`${group}/`));
}

export function isPublic(visibility: number | null): boolean {
  return visibility === VISIBILITY_PUBLIC;
}

/** The rule itself, checked per event with the visibility that event carried. */
export function mayReceive(access: AgentAccess, event: { projectPath: string; visibility: number | null }): boolean {
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
  return isGranted(access, projectPath) || isPublic(lastKnownVisibility ?? null) ? 'granted' : 'unverified';
}
