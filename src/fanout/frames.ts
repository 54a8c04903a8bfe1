/** The frame an agent gets for a stored event: `push` for pushes, `artifact` for pipeline and registry artifacts. */
import type { StoredEvent } from '../events/event.js';
import type { ArtifactFrame, PushFrame } from '../protocol/kasgate-v1.js';

export type EventFrame = PushFrame | ArtifactFrame;

export function frameOf(event: StoredEvent): EventFrame {
  const project = { id: event.projectId, path: event.projectPath, defaultBranch: event.defaultBranch };
  if (event.kind !== 'artifact') {
    return {
      type: 'push',
      eventId: event.id,
      project,
      ref: event.ref,
      before: event.before,
      after: event.after,
      receivedAt: event.receivedAt,
    };
  }
  if (event.source === 'pipeline') {
    return {
      type: 'artifact',
      eventId: event.id,
      source: 'pipeline',
      project,
      ref: event.ref,
      sha: event.sha,
      pipelineId: event.pipelineId,
      receivedAt: event.receivedAt,
    };
  }
  return {
    type: 'artifact',
    eventId: event.id,
    source: 'registry',
    project,
    repository: event.repository,
    tag: event.tag,
    digest: event.digest,
    receivedAt: event.receivedAt,
  };
}

/** The frame as the bytes written to every socket (serialized once per event). */
export const frameBytes = (event: StoredEvent): Buffer => Buffer.from(JSON.stringify(frameOf(event)));
