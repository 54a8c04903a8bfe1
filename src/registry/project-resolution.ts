/**
 * Which GitLab project a registry repository belongs to. GitLab names a project's container
 * repositories `<project path>` and `<project path>/<image name>` (names may have several
 * segments), so the project is the longest prefix of the repository, on segment boundaries, that
 * kasgate knows as a project (from the pushes and pipelines it has seen). Registry names are
 * lower case; GitLab paths compare case-insensitively.
 */
import { isWellFormedPath, normalizePath } from '../agents/access-rule.js';
import type { Project, ProjectStore } from '../projects/project-store.js';

/** group/app/img → [group/app/img, group/app, group], longest first. */
export function pathPrefixes(repository: string): string[] {
  const segments = normalizePath(repository).split('/');
  return segments.map((_, i) => segments.slice(0, segments.length - i).join('/'));
}

/** Each repository (as given) → its project, for those whose project is known. */
export async function resolveProjects(
  projects: Pick<ProjectStore, 'findByPaths'>,
  repositories: string[],
): Promise<Map<string, Project>> {
  const wellFormed = [...new Set(repositories)].filter(isWellFormedPath);
  const known = new Map(
    (await projects.findByPaths([...new Set(wellFormed.flatMap(pathPrefixes))])).map((p) => [normalizePath(p.path), p]),
  );
  const resolved = new Map<string, Project>();
  for (const repository of wellFormed) {
    const project = pathPrefixes(repository)
      .map((prefix) => known.get(prefix))
      .find((p) => p !== undefined);
    if (project) resolved.set(repository, project);
  }
  return resolved;
}
