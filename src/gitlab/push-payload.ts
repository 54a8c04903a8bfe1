/**
 * GitLab Push Hook, Tag Push Hook and System Hook (event_name push / tag_push) bodies → PushEvent.
 * Only the fields kasgate uses are read; everything else in the body is ignored.
 */
import { z } from 'zod';
import type { PushEvent } from '../events/push-event.js';

const ZERO_SHA = '0000000000000000000000000000000000000000';
const KNOWN_VISIBILITY = new Set([0, 10, 20]);

// Postgres text cannot hold NUL, nor jsonb an unpaired surrogate (both legal in JSON): such a
// value would fail the whole group-commit batch it rides in, so it is refused here, as a 400.
const UNPAIRED_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
const text = (min: number, max: number) =>
  z
    .string()
    .min(min)
    .max(max)
    .refine((s) => !s.includes('\u0000') && !UNPAIRED_SURROGATE.test(s), {
      message: 'must not contain NUL or unpaired surrogate characters',
    });

const sha = text(1, 128);

const PushBody = z.object({
  ref: text(1, 1024),
  before: sha.nullish(),
  after: sha,
  checkout_sha: sha.nullish(),
  user_username: text(0, 255).nullish(),
  project_id: z.number().int().positive().nullish(),
  project: z.object({
    id: z.number().int().positive().nullish(),
    path_with_namespace: text(1, 1024),
    visibility_level: z.unknown().optional(),
    default_branch: text(0, 1024).nullish(),
  }),
});

export type HookKind = { kind: 'push' | 'tag_push' } | { ignored: string };

/** Which push kind a delivery carries, from the X-Gitlab-Event header (or, without it, the body). */
export function classifyHook(eventHeader: string | undefined, body: Record<string, unknown>): HookKind {
  const bodyKind = typeof body.event_name === 'string' ? body.event_name : body.object_kind;
  switch (eventHeader) {
    case 'Push Hook':
      return { kind: 'push' };
    case 'Tag Push Hook':
      return { kind: 'tag_push' };
    case 'System Hook':
    case undefined:
      if (bodyKind === 'push' || bodyKind === 'tag_push') return { kind: bodyKind };
      return { ignored: `${eventHeader ?? 'hook'} event ${JSON.stringify(String(bodyKind ?? 'unknown'))} is not a push` };
    default:
      return { ignored: `${eventHeader} is not a push` };
  }
}

export type ParsedPush = { ok: true; event: PushEvent } | { ok: false; field: string; message: string };

export function parsePush(
  kind: 'push' | 'tag_push',
  body: unknown,
  receivedAt: Date,
  idempotencyKey: string | null,
): ParsedPush {
  const result = PushBody.safeParse(body);
  if (!result.success) {
    const issue = result.error.issues[0]!;
    const field = issue.path.join('.') || 'body';
    return { ok: false, field, message: `${field}: ${issue.message}` };
  }
  const p = result.data;
  const projectId = p.project.id ?? p.project_id;
  if (projectId == null) return { ok: false, field: 'project_id', message: 'project_id: required (neither project.id nor project_id is set)' };
  const level = p.project.visibility_level;
  return {
    ok: true,
    event: {
      kind,
      projectId,
      projectPath: p.project.path_with_namespace,
      visibility: typeof level === 'number' && KNOWN_VISIBILITY.has(level) ? level : null,
      defaultBranch: p.project.default_branch ?? null,
      ref: p.ref,
      before: p.before ?? ZERO_SHA,
      after: p.after,
      checkoutSha: p.checkout_sha ?? null,
      userUsername: p.user_username ?? null,
      receivedAt,
      idempotencyKey,
    },
  };
}
