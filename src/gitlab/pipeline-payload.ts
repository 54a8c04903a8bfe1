/**
 * GitLab Pipeline Hook → an artifact event (source `pipeline`) when the pipeline succeeded: the
 * pipeline that ran `flux push artifact` has finished, so the project's OCIRepositories may have
 * something new. GitLab sends a Pipeline Hook on every status change (gitlabhq
 * doc/user/project/integrations/webhook_events.md, "Pipeline events"); only `success` counts.
 */
import { z } from 'zod';
import type { PipelineArtifactEvent } from '../events/event.js';
import { firstIssue, storableSha, storableText } from '../events/storable.js';
import { HookProject, projectFields } from './hook-project.js';
import type { Arrived, ParsedEvents } from './push-payload.js';

const Status = z.object({ object_attributes: z.object({ status: storableText(1, 64) }) });

export const PipelineBody = z.object({
  object_attributes: z.object({
    id: z.number().int().positive(),
    ref: storableText(1, 1024),
    tag: z.boolean().nullish(),
    sha: storableSha,
  }),
  user: z.object({ username: storableText(0, 255).nullish() }).nullish(),
  project: HookProject,
});

/**
 * GitLab gives a pipeline's ref as a branch or tag name (`tag` says which), or as a full ref for
 * merge request pipelines (refs/merge-requests/1/head); events carry full refs, as pushes do.
 */
export function fullRef(ref: string, tag: boolean): string {
  if (ref.startsWith('refs/')) return ref;
  return `${tag ? 'refs/tags/' : 'refs/heads/'}${ref}`;
}

export function parsePipeline(body: unknown, arrived: Arrived): ParsedEvents<PipelineArtifactEvent> {
  const status = Status.safeParse(body);
  if (!status.success) return { ok: false, ...firstIssue(status.error) };
  if (status.data.object_attributes.status !== 'success') {
    return { ok: 'ignored', reason: `pipeline status ${JSON.stringify(status.data.object_attributes.status)} is not success` };
  }
  const result = PipelineBody.safeParse(body);
  if (!result.success) return { ok: false, ...firstIssue(result.error) };
  const p = result.data;
  const project = projectFields(p.project, undefined);
  if (!project.ok) return { ok: false, field: 'project.id', message: 'project.id: required' };
  return {
    ok: true,
    events: [
      {
        kind: 'artifact',
        source: 'pipeline',
        ...project.project,
        ref: fullRef(p.object_attributes.ref, p.object_attributes.tag === true),
        sha: p.object_attributes.sha,
        pipelineId: p.object_attributes.id,
        userUsername: p.user?.username ?? null,
        receivedAt: arrived.receivedAt,
        idempotencyKey: arrived.deliveryKey === null ? null : { scope: 'gitlab', value: arrived.deliveryKey },
      },
    ],
  };
}
