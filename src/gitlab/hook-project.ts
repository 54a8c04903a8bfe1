/** The `project` object GitLab puts in push, repository_update and pipeline payloads (Project#hook_attrs). */
import { z } from 'zod';
import { storableText } from '../events/storable.js';
import type { ProjectFields } from '../events/event.js';

const KNOWN_VISIBILITY = new Set([0, 10, 20]);

export const HookProject = z.object({
  id: z.number().int().positive().nullish(),
  path_with_namespace: storableText(1, 1024),
  visibility_level: z.unknown().optional(),
  default_branch: storableText(0, 1024).nullish(),
});

/** visibility_level as the access rule reads it: anything but 0, 10 or 20 is unknown (and fails closed). */
export function visibilityOf(level: unknown): number | null {
  return typeof level === 'number' && KNOWN_VISIBILITY.has(level) ? level : null;
}

/**
 * The project fields of an event. System hooks carry no `project.id`, only a top-level
 * `project_id`; the result names the field when neither is there.
 */
export function projectFields(
  project: z.infer<typeof HookProject>,
  topLevelId: number | null | undefined,
): { ok: true; project: ProjectFields } | { ok: false; field: string; message: string } {
  const projectId = project.id ?? topLevelId;
  if (projectId == null) return { ok: false, field: 'project_id', message: 'project_id: required (neither project.id nor project_id is set)' };
  return {
    ok: true,
    project: {
      projectId,
      projectPath: project.path_with_namespace,
      visibility: visibilityOf(project.visibility_level),
      defaultBranch: project.default_branch ?? null,
    },
  };
}
