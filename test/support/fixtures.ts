/** The GitLab sample payloads (test/fixtures/gitlab), the registry envelopes (test/fixtures/registry), and variants of them. */
import { readFileSync } from 'node:fs';

const load = (name: string) => readFileSync(new URL(`../fixtures/gitlab/${name}`, import.meta.url));
const loadRegistry = (name: string) => readFileSync(new URL(`../fixtures/registry/${name}`, import.meta.url));

export const fixtures = {
  push: { raw: load('push-hook.json'), event: 'Push Hook' },
  tagPush: { raw: load('tag-push-hook.json'), event: 'Tag Push Hook' },
  systemPush: { raw: load('system-hook-push.json'), event: 'System Hook' },
  repositoryUpdate: { raw: load('repository-update.json'), event: 'System Hook' },
  pipeline: { raw: load('pipeline-hook.json'), event: 'Pipeline Hook' },
} as const;

export const registryFixtures = {
  /** distribution's documented push: a manifest by digest and two layers, no tag. */
  push: loadRegistry('push-envelope.json'),
  /** distribution's documented pull. */
  pull: loadRegistry('pull-envelope.json'),
  /** Two layers, then a manifest pushed by tag to gitlab-org/gitlab-test/manifests. */
  taggedPush: loadRegistry('tagged-push-envelope.json'),
} as const;

export type FixtureName = keyof typeof fixtures;

export interface PushVariant {
  path?: string;
  projectId?: number;
  visibility?: number | null;
  ref?: string;
  after?: string;
  defaultBranch?: string;
}

/** A Push Hook body for any project, visibility and ref. `visibility: null` drops the field. */
export function pushBody(variant: PushVariant = {}): Record<string, any> {
  const body = JSON.parse(fixtures.push.raw.toString());
  if (variant.path !== undefined) body.project.path_with_namespace = variant.path;
  if (variant.projectId !== undefined) body.project.id = body.project_id = variant.projectId;
  if (variant.visibility === null) delete body.project.visibility_level;
  else if (variant.visibility !== undefined) body.project.visibility_level = variant.visibility;
  if (variant.ref !== undefined) body.ref = variant.ref;
  if (variant.after !== undefined) body.after = body.checkout_sha = variant.after;
  if (variant.defaultBranch !== undefined) body.project.default_branch = variant.defaultBranch;
  return body;
}

let projectIds = 1000;
/** A distinct project id per call, so tests don't collide in the projects table. */
export const nextProjectId = () => ++projectIds;
