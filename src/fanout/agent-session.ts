/**
 * One agent connection: its subscription, its position in the log, and every frame written to
 * it. Live events arrive through the hub; while a replay runs they are buffered, then merged in
 * id order, so the agent sees no gap and no reordering between stored and live events.
 */
import type { WebSocket } from 'ws';
import { isGranted, isPublic as isPublicVisibility, isWellFormedPath, normalizePath, subscriptionAccess, type AgentAccess } from '../agents/access-rule.js';
import { CloseCode, type ServerFrame } from '../protocol/kasgate-v1.js';
import type { StoredEvent } from '../events/event.js';
import type { ConnectionRecord } from './presence.js';

/** Events buffered while a replay runs; past it, the buffer is dropped and re-read from the log. */
const MAX_REPLAY_BUFFER = 10_000;
/** After asking a socket to close, give it this long before cutting it. */
const CLOSE_GRACE_MS = 2000;

export interface SessionIdentity {
  connectionId: string;
  agentId: string;
  agentName: string;
  tokenId: string;
  replicaId: string;
  remoteAddress: string;
}

export interface SessionLimits {
  maxSendBufferBytes: number;
}

export interface SessionHooks {
  /** The socket went over its send-buffer bound and is being closed. */
  onSlowConsumer(): void;
  /** A queued task threw; the session is closed with 1011 so that the agent reconnects and resumes. */
  onTaskFailed(err: unknown): void;
}

/** Event frames are serialized once per event as bytes, and go out as text frames. */
const AS_TEXT = { binary: false } as const;

interface BufferedEvent {
  event: StoredEvent;
  id: bigint;
  frame: Buffer;
}

/** RFC 6455 "internal error": the agent should reconnect and resume. */
const CLOSE_INTERNAL_ERROR = 1011;

export class AgentSession {
  /** Epoch milliseconds (kept as numbers: a date string per socket adds up at 20,000 sockets). */
  readonly connectedAt = Date.now();
  /** The last pong, which is the agent's heartbeat. */
  lastPongAt = this.connectedAt;
  /** Lower-cased path → as the agent spelled it. */
  projects = new Map<string, string>();
  /** Highest event id written (or deliberately skipped) on this connection. */
  lastSentId = 0n;
  subscribedOnce = false;
  badFrames = 0;
  /** The config last sent (hello or config frame), as stable JSON; undefined before the hello. */
  sentConfig: string | undefined;

  private grantedPaths = new Set<string>();
  private replaying = false;
  private buffer: BufferedEvent[] = [];
  private bufferOverflowed = false;
  private closing = false;
  private work: Promise<void> = Promise.resolve();

  constructor(
    readonly id: SessionIdentity,
    private access: AgentAccess,
    private readonly ws: WebSocket,
    private readonly limits: SessionLimits,
    private readonly hooks: SessionHooks,
  ) {}

  get agentId(): string {
    return this.id.agentId;
  }

  /** Resolves once the socket has sent most of what is queued (replay pages wait on it), or closed. */
  async drained(): Promise<void> {
    while (this.isOpen && this.ws.bufferedAmount > this.limits.maxSendBufferBytes / 2) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  get isOpen(): boolean {
    return !this.closing && this.ws.readyState === this.ws.OPEN;
  }

  record(): ConnectionRecord {
    return {
      connectionId: this.id.connectionId,
      agentId: this.id.agentId,
      agentName: this.id.agentName,
      replicaId: this.id.replicaId,
      remoteAddress: this.id.remoteAddress,
      connectedAt: new Date(this.connectedAt).toISOString(),
      lastHeartbeatAt: new Date(this.lastPongAt).toISOString(),
      projects: [...this.projects.values()],
    };
  }

  /** Runs subscription work one at a time, in the order the frames arrived. A failed task ends the session. */
  enqueue(task: () => Promise<void>): void {
    this.work = this.work.then(task).catch((err: unknown) => {
      this.hooks.onTaskFailed(err);
      this.close(CLOSE_INTERNAL_ERROR, 'internal error; reconnect and resume');
    });
  }

  setAccess(access: AgentAccess): void {
    this.access = access;
    this.grantedPaths = new Set([...this.projects.keys()].filter((p) => isGranted(access, p)));
  }

  /** Replaces the subscription; returns the lower-cased paths. Entering replay mode is atomic with it. */
  setProjects(paths: string[], startReplay: boolean): string[] {
    this.projects = new Map(paths.map((p) => [normalizePath(p), p]));
    this.grantedPaths = new Set([...this.projects.keys()].filter((p) => isGranted(this.access, p)));
    if (startReplay) {
      this.replaying = true;
      this.buffer = [];
      this.bufferOverflowed = false;
    }
    return [...this.projects.keys()];
  }

  /** Hub entry point for a live event of a subscribed project. Returns whether a frame was written. */
  offer(event: StoredEvent, id: bigint, frame: Buffer, lowerPath: string, isPublic: boolean): boolean {
    if (!this.allows(lowerPath, isPublic)) return false;
    if (this.replaying) {
      if (this.buffer.length < MAX_REPLAY_BUFFER) this.buffer.push({ event, id, frame });
      else this.bufferOverflowed = true;
      return false;
    }
    return this.writeEvent(id, frame);
  }

  /** Writes an event frame unless the connection already passed this id. */
  writeEvent(id: bigint, frame: Buffer): boolean {
    if (id <= this.lastSentId || !this.isOpen) return false;
    // Bounds the backlog: a frame larger than the bound still goes out when nothing is queued.
    const queued = this.ws.bufferedAmount;
    if (queued > 0 && queued + frame.length > this.limits.maxSendBufferBytes) {
      this.closeSlowConsumer();
      return false;
    }
    this.ws.send(frame, AS_TEXT);
    this.lastSentId = id;
    return true;
  }

  /** Positions the connection for a replay (replay.ts) of what follows `after`. */
  resumeAfter(after: string): void {
    this.lastSentId = BigInt(after);
  }

  /** Takes what arrived during replay; the caller decides whether to re-read (overflow) or go live. */
  takeBuffer(): { events: BufferedEvent[]; overflowed: boolean } {
    const taken = { events: this.buffer, overflowed: this.bufferOverflowed };
    this.buffer = [];
    this.bufferOverflowed = false;
    return taken;
  }

  goLive(): void {
    this.replaying = false;
  }

  /** Whether the agent's access grants this path whatever its visibility (rules 1, 3 and 4). */
  isGrantedPath(path: string): boolean {
    return isGranted(this.access, path);
  }

  /** The `subscribed` frame's list, given the last known visibility of each lower-cased path. */
  subscriptionAnswer(visibility: Map<string, number | null>): { path: string; access: 'granted' | 'unverified' }[] {
    return [...this.projects].map(([lower, path]) => ({ path, access: subscriptionAccess(this.access, lower, visibility.get(lower)) }));
  }

  /** The access rule for a replayed event, through the same check the live path (`offer`) makes. */
  mayReceive(event: StoredEvent): boolean {
    const lower = normalizePath(event.projectPath);
    return this.projects.has(lower) && isWellFormedPath(event.projectPath) && this.allows(lower, isPublicVisibility(event.visibility));
  }

  /** A subscribed path's event: public, or granted whatever its visibility (rules 1, 3 and 4). */
  private allows(lowerPath: string, isPublic: boolean): boolean {
    return isPublic || this.grantedPaths.has(lowerPath);
  }

  /** Writes a control frame; one that does not read them (subscribed answers, errors) is cut like a slow consumer. */
  send(frame: ServerFrame): void {
    if (!this.isOpen) return;
    if (this.ws.bufferedAmount > this.limits.maxSendBufferBytes) {
      this.closeSlowConsumer();
      return;
    }
    this.ws.send(JSON.stringify(frame));
  }

  sendError(code: string, message: string): void {
    this.send({ type: 'error', code, message });
  }

  ping(): void {
    if (this.isOpen) this.ws.ping();
  }

  private closeSlowConsumer(): void {
    this.hooks.onSlowConsumer();
    this.close(CloseCode.SlowConsumer, 'send buffer full: reconnect and resume');
  }

  close(code: number, reason: string): void {
    if (this.closing) return;
    this.closing = true;
    this.replaying = false;
    try {
      this.ws.close(code, reason);
    } catch {
      this.ws.terminate();
    }
    setTimeout(() => this.ws.terminate(), CLOSE_GRACE_MS).unref();
  }
}
