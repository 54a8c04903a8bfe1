/** Which kind of delivery a GitLab webhook is, from its X-Gitlab-Event header (or, without it, its body). */

export type HookKind = 'push' | 'tag_push' | 'repository_update' | 'pipeline';

export function classifyHook(eventHeader: string | undefined, body: Record<string, unknown>): { kind: HookKind } | { ignored: string } {
  const bodyKind = typeof body.event_name === 'string' ? body.event_name : body.object_kind;
  switch (eventHeader) {
    case 'Push Hook':
      return { kind: 'push' };
    case 'Tag Push Hook':
      return { kind: 'tag_push' };
    case 'Pipeline Hook':
      return { kind: 'pipeline' };
    case 'System Hook':
    case undefined:
      // System hooks say what they are in event_name (no object_kind); they carry no pipelines.
      if (bodyKind === 'push' || bodyKind === 'tag_push' || bodyKind === 'repository_update') return { kind: bodyKind };
      if (eventHeader === undefined && bodyKind === 'pipeline') return { kind: 'pipeline' };
      return { ignored: `${eventHeader ?? 'hook'} event ${JSON.stringify(String(bodyKind ?? 'unknown'))} is not a push` };
    default:
      return { ignored: `${eventHeader} is not a push or a pipeline` };
  }
}
