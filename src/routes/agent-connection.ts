/**
 * One agent connection, once the socket route (agent-socket.ts) has checked its token: the
 * session in the hub and presence, the hello, the frames the agent sends (subscribe, ack, status,
 * credential outcomes), replay, heartbeats, and what happens when it goes.
 */
import { randomUUID } from 'node:crypto';
import type { RawData, WebSocket } from 'ws';
import { VISIBILITY_PUBLIC, type AgentAccess } from '../agents/access-rule.js';
import type { AuthenticatedToken } from '../agents/token-store.js';
import { stableJson } from '../agents/config-file/parse.js';
import { AgentSession } from '../fanout/agent-session.js';
import { replay, whileOpen } from '../fanout/replay.js';
import { CloseCode, ErrorCode, parseClientFrame, type SubscribeFrame } from '../protocol/kasgate-v1.js';
import type { AppContext } from '../context.js';

function byteLength(data: RawData): number {
  if (Array.isArray(data)) return data.reduce((n, b) => n + b.length, 0);
  return data instanceof ArrayBuffer ? data.byteLength : data.length;
}

function text(data: RawData): string {
  if (Array.isArray(data)) return Buffer.concat(data).toString('utf8');
  return Buffer.from(data as ArrayBuffer).toString('utf8');
}

export function openSession(ctx: AppContext, ws: WebSocket, token: AuthenticatedToken, access: AgentAccess, remoteAddress: string) {
  const { config, hub, presence, metrics, log } = ctx;
  const { limits } = config;
  const { agentId, tokenId } = token;
  const session = new AgentSession(
    { connectionId: randomUUID(), agentId, agentName: token.agentName, tokenId, replicaId: config.replicaId, remoteAddress },
    access,
    ws,
    { maxSendBufferBytes: limits.maxSendBufferBytes },
    {
      onSlowConsumer: () => metrics.slowConsumersClosed.inc(),
      onTaskFailed: (err) => log.error({ err, agentId, connectionId: session.id.connectionId }, 'agent session task failed; closing the socket'),
    },
  );
  // Log fields inline rather than a child logger per connection: at 20,000 sockets it shows.
  const where = () => ({ agentId, connectionId: session.id.connectionId });
  const status = ctx.cluster.connection(agentId, session.id.connectionId, {
    sendError: (code, message) => session.sendError(code, message),
  });
  // Kept only until the hello frame is sent.
  let hello: Record<string, unknown> | undefined = token.config;
  let registered = false;

  session.enqueue(async () => {
    let result = await presence.register(session.record(), limits.maxConnectionsPerAgent).catch((err: Error) => {
      log.warn({ ...where(), err: err.message }, 'presence unavailable; counting this replica only');
      return 'unavailable' as const;
    });
    if (result === 'unavailable' && hub.localCount(agentId) >= limits.maxConnectionsPerAgent) result = 'over_limit';
    if (result === 'over_limit') {
      session.close(CloseCode.TooManyConnections, `at most ${limits.maxConnectionsPerAgent} connections per agent`);
      return;
    }
    registered = true;
    if (!session.isOpen) {
      await presence.remove(session.record()).catch(() => {});
      return;
    }
    hub.add(session);
    ctx.tokens.markUsed(tokenId);
    session.send({
      type: 'hello',
      agentId,
      connectionId: session.id.connectionId,
      heartbeatSeconds: config.heartbeatSeconds,
      config: hello ?? {},
      limits: { maxFrameBytes: limits.maxFrameBytes, maxStatusObjects: config.maxStatusObjects },
    });
    session.sentConfig = stableJson(hello ?? {});
    hello = undefined;
    // A revocation or grant change that raced the upgrade found no socket here to apply to: look again.
    const [active] = await Promise.all([
      ctx.tokens.isActive(tokenId).catch(() => true),
      hub.refreshAccess(agentId).catch((err: Error) => log.warn({ ...where(), err: err.message }, 'could not re-read agent access')),
    ]);
    if (!active) {
      session.close(CloseCode.Revoked, 'token revoked');
      return;
    }
    log.info({ ...where(), agentName: session.id.agentName, remoteAddress }, 'agent connected');
    // Deploy tokens still waiting for this agent (made while it was away, or unanswered); none without flux_access.
    if (token.fluxAccess?.entries.length) ctx.credentials.connected(session);
  });

  const reject = (code: string, message: string) => {
    metrics.framesRejected.inc({ code });
    session.badFrames++;
    session.sendError(code, message);
    if (session.badFrames >= limits.maxBadFrames) {
      session.close(CloseCode.ProtocolViolation, `${limits.maxBadFrames} bad frames in a row`);
    }
  };

  ws.on('message', (data: RawData, isBinary: boolean) => {
    if (byteLength(data) > limits.maxFrameBytes) {
      metrics.framesRejected.inc({ code: 'frame_too_large' });
      session.close(CloseCode.ProtocolViolation, `frame over ${limits.maxFrameBytes} bytes`);
      return;
    }
    if (isBinary) return reject(ErrorCode.InvalidFrame, 'frames must be JSON text');
    const parsed = parseClientFrame(text(data));
    if (!parsed.ok) return reject(parsed.code, parsed.message);
    const frame = parsed.frame;
    if (frame.type === 'subscribe' && frame.projects.length > limits.maxProjectsPerSubscribe) {
      return reject(ErrorCode.TooManyProjects, `a subscribe may name at most ${limits.maxProjectsPerSubscribe} projects`);
    }
    session.badFrames = 0;
    if (frame.type === 'ack') ctx.cursors.ack(agentId, frame.eventId);
    else if (frame.type === 'subscribe') session.enqueue(() => subscribe(ctx, session, frame));
    else if (frame.type === 'status') {
      // Written in the background (src/cluster); the socket never waits for Postgres.
      const taken = status.receive(frame);
      if (!taken.ok) return reject(taken.code, taken.message);
    }
    else if (frame.type === 'credentials_applied' || frame.type === 'credentials_failed') {
      ctx.credentials.received(agentId, frame).catch((err: Error) => log.warn({ ...where(), err: err.message }, 'could not record the answer to credentials; they are sent again'));
    }
  });

  ws.on('pong', () => {
    session.lastPongAt = Date.now();
  });
  ws.on('error', (err) => log.debug({ ...where(), err: err.message }, 'agent socket error'));
  ws.on('close', (code: number) => {
    hub.remove(session);
    status.close();
    // The agent may resume on another replica within a second: hand its acks over now.
    ctx.cursors.flushSoon();
    if (registered) presence.remove(session.record()).catch(() => {});
    log.info({ ...where(), code }, 'agent disconnected');
  });
}

async function subscribe(ctx: AppContext, session: AgentSession, frame: SubscribeFrame): Promise<void> {
  if (!session.isOpen) return;
  const first = !session.subscribedOnce;
  session.subscribedOnce = true;
  let resumeFrom = frame.resumeAfter;
  if (resumeFrom === undefined && first) {
    const stored = await whileOpen(session, ctx, async () => ({ cursor: await ctx.cursors.get(session.agentId) }));
    if (!stored) return;
    resumeFrom = stored.cursor;
    // An agent with no position yet starts live from here; remember it, so that if it drops
    // before its first ack it still resumes from this point rather than from "now".
    if (resumeFrom === undefined) {
      ctx.cursors.ack(session.agentId, ctx.dispatcher.highestDispatched);
    }
  }
  const wanted = [...new Set(frame.projects)];
  const visibility = await ctx.projects
    .visibilities(wanted.map((p) => p.toLowerCase()))
    .catch(() => new Map<string, number | null>());
  if (ctx.projectVisibility) {
    // Projects not yet known public nor granted: GitLab may say they are public (cached, bounded wait).
    const unknown = wanted.filter((p) => visibility.get(p.toLowerCase()) !== VISIBILITY_PUBLIC && !session.isGrantedPath(p));
    if (unknown.length > 0) {
      for (const path of await ctx.projectVisibility.publicAmong(unknown)) visibility.set(path, VISIBILITY_PUBLIC);
    }
  }
  if (!session.isOpen) return;

  // From here to the replay's start nothing awaits: live events are buffered from this instant.
  ctx.hub.subscribe(session, wanted, resumeFrom !== undefined);
  session.send({ type: 'subscribed', projects: session.subscriptionAnswer(visibility) });
  ctx.presence.put(session.record()).catch((err: Error) => ctx.log.warn({ err: err.message }, 'presence write failed; the heartbeat retries'));
  if (resumeFrom !== undefined) {
    session.resumeAfter(resumeFrom);
    await replay(session, ctx);
  }
}
