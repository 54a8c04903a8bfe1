/**
 * GitLab Push Hook, Tag Push Hook and System Hook (event_name push / tag_push / repository_update)
 * bodies → PushEvents. Only the fields kasgate uses are read; everything else in the body is ignored.
 */
import { z } from 'zod';
import type { IdempotencyKey, PushEvent } from '../events/event.js';
import { firstIssue, storableSha, storableText } from '../events/storable.js';
import { HookProject, projectFields } from './hook-project.js';

const ZERO_SHA = /^0+$/;

export const PushBody = z.object({
  ref: storableText(1, 1024),
  before: storableSha.nullish(),
  after: storableSha,
  checkout_sha: storableSha.nullish(),
  user_username: storableText(0, 255).nullish(),
  project_id: z.number().int().positive().nullish(),
  project: HookProject,
});

export type ParsedEvents<E> =
  | { ok: true; events: E[] }
  | { ok: false; field: string; message: string }
  | { ok: 'ignored'; reason: string };

export interface Arrived {
  receivedAt: Date;
  /** The delivery's Idempotency-Key (else webhook-id), null when it had neither. */
  deliveryKey: string | null;
}

export function parsePush(kind: 'push' | 'tag_push', body: unknown, arrived: Arrived): ParsedEvents<PushEvent> {
  const result = PushBody.safeParse(body);
  if (!result.success) return { ok: false, ...firstIssue(result.error) };
  const p = result.data;
  const project = projectFields(p.project, p.project_id);
  if (!project.ok) return project;
  return {
    ok: true,
    events: [
      {
        kind,
        ...project.project,
        ref: p.ref,
        before: p.before ?? null,
        after: p.after,
        checkoutSha: p.checkout_sha ?? null,
        userUsername: p.user_username ?? null,
        receivedAt: arrived.receivedAt,
        idempotencyKey: arrived.deliveryKey === null ? null : { scope: 'gitlab', value: arrived.deliveryKey },
      },
    ],
  };
}

/**
 * The system hook GitLab fires once per `git push` (on by default for a new system hook), with
 * every ref the push changed, however many: GitLab's post-receive builds it with
 * Gitlab::DataBuilder::Repository.update (see gitlabhq doc/administration/system_hooks.md,
 * "Repository Update events"). It has no checkout_sha and no user_username.
 */
export const RepositoryUpdateBody = z.object({
  project_id: z.number().int().positive().nullish(),
  project: HookProject,
  changes: z.array(
    z.object({
      before: storableSha.nullish(),
      after: storableSha,
      ref: storableText(1, 1024),
    }),
  ),
});

/** The key of change `index` of a delivery: its own, stable across GitLab's retries of the delivery. */
export const changeKey = (deliveryKey: string, index: number): IdempotencyKey => ({ scope: 'gitlab_change', value: `${deliveryKey}#${index}` });

/** One push or tag push per change of a branch or tag (what push hooks would have said, had GitLab sent them). */
export function parseRepositoryUpdate(body: unknown, arrived: Arrived): ParsedEvents<PushEvent> {
  const result = RepositoryUpdateBody.safeParse(body);
  if (!result.success) return { ok: false, ...firstIssue(result.error) };
  const p = result.data;
  const project = projectFields(p.project, p.project_id);
  if (!project.ok) return project;
  const events: PushEvent[] = [];
  p.changes.forEach((change, index) => {
    const tag = change.ref.startsWith('refs/tags/');
    // Push hooks exist only for branches and tags; other refs (refs/merge-requests, refs/keep-around…) are GitLab's own.
    if (!tag && !change.ref.startsWith('refs/heads/')) return;
    events.push({
      kind: tag ? 'tag_push' : 'push',
      ...project.project,
      ref: change.ref,
      before: change.before ?? null,
      after: change.after,
      // A branch's checkout_sha is its new head (none once deleted); a tag's may be an annotated tag object's target, unknown here.
      checkoutSha: tag || ZERO_SHA.test(change.after) ? null : change.after,
      userUsername: null,
      receivedAt: arrived.receivedAt,
      idempotencyKey: arrived.deliveryKey === null ? null : changeKey(arrived.deliveryKey, index),
    });
  });
  if (events.length === 0) {
    return { ok: 'ignored', reason: `repository_update changed no branch or tag (${p.changes.length} change${p.changes.length === 1 ? '' : 's'})` };
  }
  return { ok: true, events };
}
