/**
 * A scripted agent that behaves like a well-written real one for failure tests: it keeps one
 * kasgate.v1 connection open across replica deaths and drains, reconnecting to the next URL of
 * its list, and resumes with `resumeAfter` = the last event id it saw (or, in `stored-cursor`
 * mode, like an agent that lost its memory: from the cursor its acks stored on the gateway).
 * It dedups by eventId and
 * counts what a test wants to report: duplicates, events that arrived out of id order, resyncs,
 * connections.
 */
import WebSocket from 'ws';
import { CONNECT_PATH, CloseCode, parseServerFrame, SUBPROTOCOL, type PushFrame } from '../../src/protocol/kasgate-v1.js';

export interface ResumingAgentOptions {
  name: string;
  token: string;
  /** ws:// base URLs of the replicas; each (re)connect tries the next one. A function is read on every attempt. */
  urls: string[] | (() => string[]);
  projects: string[];
  /** resumeAfter before any event was seen; '0' asks for every stored event. Undefined: none (stored cursor). */
  startAfter?: string;
  /** Ack every event (moves the stored cursor). */
  ack?: boolean;
  /**
   * How reconnects resume: `last-seen` (default) sends resumeAfter = the highest id received;
   * `stored-cursor` acks every event and sends no resumeAfter, so the gateway uses the stored cursor.
   */
  resume?: 'last-seen' | 'stored-cursor';
  /** Index into `urls` of the first attempt. */
  firstUrl?: number;
}

export interface ResumingAgent {
  name: string;
  /** Every distinct event received, by id. */
  received: Map<string, PushFrame>;
  duplicates: number;
  /** Events first seen after a higher id had already arrived. */
  outOfOrder: number;
  resyncs: number;
  /** hello frames seen, i.e. successful connections. */
  connections: number;
  /** Every close of an opened connection: code, when (ms epoch), and where it was. */
  closes: { code: number; at: number; url: string }[];
  /** Where the current connection goes (undefined while disconnected). */
  connectedTo: string | undefined;
  lastEventId: string | undefined;
  /** Resolves once more than `afterSubscribes` subscribed frames arrived (default 0: subscribed once). */
  waitSubscribed(timeoutMs?: number, afterSubscribes?: number): Promise<void>;
  waitForEvents(ids: Iterable<string>, timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

const HANDSHAKE_TIMEOUT_MS = 5000;

export function startResumingAgent(options: ResumingAgentOptions): ResumingAgent {
  const urls = typeof options.urls === 'function' ? options.urls : () => options.urls as string[];
  let attempt = options.firstUrl ?? 0;
  const state = { stopped: false };
  const storedCursor = options.resume === 'stored-cursor';
  let socket: WebSocket | undefined;
  let subscribedCount = 0;
  let highest: bigint | undefined;
  const wakers = new Set<() => void>();
  const wake = () => {
    for (const w of wakers) w();
  };

  const agent: ResumingAgent = {
    name: options.name,
    received: new Map(),
    duplicates: 0,
    outOfOrder: 0,
    resyncs: 0,
    connections: 0,
    closes: [],
    connectedTo: undefined,
    get lastEventId() {
      return highest === undefined ? undefined : String(highest);
    },
    waitSubscribed(timeoutMs = 10_000, afterSubscribes = 0) {
      return waitUntil(() => subscribedCount > afterSubscribes, timeoutMs, () => `${options.name}: not subscribed`);
    },
    waitForEvents(ids, timeoutMs = 15_000) {
      const wanted = [...ids];
      return waitUntil(
        () => wanted.every((id) => agent.received.has(id)),
        timeoutMs,
        () => {
          const missing = wanted.filter((id) => !agent.received.has(id));
          return `${options.name}: ${missing.length} of ${wanted.length} events missing (first: ${missing.slice(0, 10).join(', ')}); connections ${agent.connections}, closes ${agent.closes.map((c) => c.code).join(',')}`;
        },
      );
    },
    async stop() {
      state.stopped = true;
      wake();
      if (socket && socket.readyState !== WebSocket.CLOSED) {
        const closed = new Promise((resolve) => socket!.once('close', resolve));
        socket.close();
        await closed;
      }
      await running;
    },
  };

  function waitUntil(done: () => boolean, timeoutMs: number, why: () => string): Promise<void> {
    return new Promise((resolve, reject) => {
      const check = () => {
        if (!done()) return;
        cleanup();
        resolve();
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(why()));
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        wakers.delete(check);
      };
      wakers.add(check);
      check();
    });
  }

  function onPush(frame: PushFrame): void {
    const id = BigInt(frame.eventId);
    if (agent.received.has(frame.eventId)) {
      agent.duplicates++;
      return;
    }
    agent.received.set(frame.eventId, frame);
    if (highest !== undefined && id < highest) agent.outOfOrder++;
    if (highest === undefined || id > highest) highest = id;
    if (options.ack || storedCursor) socket?.send(JSON.stringify({ type: 'ack', eventId: frame.eventId }));
  }

  /** One connection, from the upgrade to the close; resolves with the close code (0: never opened). */
  function connectOnce(base: string): Promise<number> {
    return new Promise((resolve) => {
      const ws = new WebSocket(`${base}${CONNECT_PATH}`, [SUBPROTOCOL], {
        headers: { authorization: `Bearer ${options.token}` },
        handshakeTimeout: HANDSHAKE_TIMEOUT_MS,
      });
      socket = ws;
      let opened = false;
      ws.on('open', () => {
        opened = true;
        agent.connectedTo = base;
      });
      ws.on('message', (data) => {
        const parsed = parseServerFrame(data.toString());
        if (!parsed.ok) return;
        const frame = parsed.frame;
        if (frame.type === 'hello') {
          agent.connections++;
          const resumeAfter = storedCursor ? (agent.connections === 1 ? options.startAfter : undefined) : (agent.lastEventId ?? options.startAfter);
          ws.send(JSON.stringify({ type: 'subscribe', projects: options.projects, ...(resumeAfter === undefined ? {} : { resumeAfter }) }));
        } else if (frame.type === 'subscribed') {
          subscribedCount++;
        } else if (frame.type === 'push') {
          onPush(frame);
        } else if (frame.type === 'resync') {
          agent.resyncs++;
        }
        wake();
      });
      ws.on('error', () => {});
      ws.on('close', (code) => {
        agent.connectedTo = undefined;
        if (opened) agent.closes.push({ code, at: Date.now(), url: base });
        wake();
        resolve(opened ? code : 0);
      });
    });
  }

  const running = (async () => {
    while (!state.stopped) {
      const list = urls();
      const base = list[attempt++ % list.length]!;
      const code = await connectOnce(base);
      if (state.stopped || code === CloseCode.Revoked) break;
      // 1012 says "reconnect now"; anything else backs off a little.
      const delay = code === CloseCode.ReplicaShutdown ? Math.random() * 100 : 100 + Math.random() * 200;
      await new Promise((r) => setTimeout(r, delay));
    }
  })();

  return agent;
}
