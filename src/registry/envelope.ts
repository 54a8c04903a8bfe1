/**
 * The notification envelope of the Docker distribution registry (what GitLab's container
 * registry sends): `{"events":[{id, timestamp, action, target:{mediaType, digest, repository,
 * tag, …}, request, actor, source}, …]}`, one or more unrelated events per request (see
 * distribution/distribution docs/content/about/notifications.md, "Events" and "Envelope").
 *
 * Only a `push` with a `tag` can change what an OCIRepository resolves to: layer (blob) pushes,
 * manifests pushed by digest, pulls, mounts and deletes do not count. The registry retries an
 * envelope until it gets a 2xx or 3xx, and "pickiness" about validation backs its queue up, so
 * only what kasgate would store is validated; everything else is counted and ignored.
 */
import { z } from 'zod';
import { firstIssue, storableSha, storableText } from '../events/storable.js';

const Envelope = z.object({ events: z.array(z.unknown()).min(1) });

export const TaggedPush = z.object({
  id: storableText(1, 255),
  action: z.literal('push'),
  target: z.object({
    repository: storableText(1, 1024),
    tag: storableText(1, 255),
    digest: storableSha.nullish(),
  }),
  actor: z.object({ name: storableText(0, 255).nullish() }).nullish(),
});

export interface TaggedPushEvent {
  /** The registry's event id: unique per event, kept across the registry's retries. */
  id: string;
  repository: string;
  tag: string;
  digest: string | null;
  /** Who pushed, as the registry's authorization saw it (a GitLab username in GitLab's registry). */
  actor: string | null;
}

/** Why events of an envelope did not count, by reason. */
export type Skipped = Record<'not_push' | 'untagged', number>;

export type ParsedEnvelope =
  | { ok: true; pushes: TaggedPushEvent[]; skipped: Skipped }
  | { ok: false; field: string; message: string };

const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

export function parseEnvelope(body: unknown): ParsedEnvelope {
  const envelope = Envelope.safeParse(body);
  if (!envelope.success) return { ok: false, ...firstIssue(envelope.error) };
  const pushes: TaggedPushEvent[] = [];
  const skipped: Skipped = { not_push: 0, untagged: 0 };
  for (const [index, event] of envelope.data.events.entries()) {
    if (!isObject(event)) return { ok: false, field: `events[${index}]`, message: `events[${index}]: must be an object` };
    if (event.action !== 'push') {
      skipped.not_push++;
      continue;
    }
    const target = event.target;
    if (!isObject(target) || target.tag === undefined || target.tag === null || target.tag === '') {
      skipped.untagged++;
      continue;
    }
    const parsed = TaggedPush.safeParse(event);
    if (!parsed.success) return { ok: false, ...firstIssue(parsed.error, `events[${index}]`) };
    const { id, target: t, actor } = parsed.data;
    pushes.push({ id, repository: t.repository, tag: t.tag, digest: t.digest ?? null, actor: actor?.name || null });
  }
  return { ok: true, pushes, skipped };
}
