/** A scripted kasgate.v1 agent for tests: a real WebSocket that records every frame it receives. */
import WebSocket from 'ws';
import {
  CONNECT_PATH,
  parseServerFrame,
  SUBPROTOCOL,
  type ArtifactFrame,
  type PushFrame,
  type ServerFrame,
} from '../../src/protocol/kasgate-v1.js';

export interface TestAgent {
  ws: WebSocket;
  frames: ServerFrame[];
  pushes(): PushFrame[];
  artifacts(): ArtifactFrame[];
  send(frame: unknown): void;
  sendRaw(data: string | Buffer, binary?: boolean): void;
  subscribe(projects: string[], resumeAfter?: string): Promise<Extract<ServerFrame, { type: 'subscribed' }>>;
  waitFor<T extends ServerFrame>(predicate: (frame: ServerFrame) => frame is T, timeoutMs?: number): Promise<T>;
  waitFor(predicate: (frame: ServerFrame) => boolean, timeoutMs?: number): Promise<ServerFrame>;
  /** Resolves with the close code and reason once the socket closes. */
  closed: Promise<{ code: number; reason: string }>;
  close(): Promise<void>;
}

export interface ConnectOptions {
  protocols?: string[];
  /** Answer pings (default). Off, the server's heartbeat should end the socket. */
  autoPong?: boolean;
}

/** Rejects with the HTTP status when the upgrade is refused. */
export function connectAgent(wsUrl: string, token: string, options: ConnectOptions = {}): Promise<TestAgent> {
  const ws = new WebSocket(`${wsUrl}${CONNECT_PATH}`, options.protocols ?? [SUBPROTOCOL], {
    headers: { authorization: `Bearer ${token}` },
    autoPong: options.autoPong ?? true,
  });
  const frames: ServerFrame[] = [];
  const waiters = new Set<() => void>();
  ws.on('message', (data) => {
    const parsed = parseServerFrame(data.toString());
    if (!parsed.ok) throw new Error(`server sent a frame outside the protocol: ${parsed.message}`);
    frames.push(parsed.frame);
    for (const wake of waiters) wake();
  });
  const closed = new Promise<{ code: number; reason: string }>((resolve) => {
    ws.on('close', (code, reason) => {
      resolve({ code, reason: reason.toString() });
      for (const wake of waiters) wake();
    });
  });

  function waitFor(predicate: (frame: ServerFrame) => boolean, timeoutMs = 5000): Promise<ServerFrame> {
    return new Promise((resolve, reject) => {
      let seen = 0;
      const check = () => {
        for (; seen < frames.length; seen++) {
          if (predicate(frames[seen]!)) {
            cleanup();
            resolve(frames[seen]!);
            return;
          }
        }
        if (ws.readyState === WebSocket.CLOSED) {
          cleanup();
          reject(new Error(`socket closed while waiting; frames: ${JSON.stringify(frames.map((f) => f.type))}`));
        }
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`timed out after ${timeoutMs} ms; frames: ${JSON.stringify(frames.map((f) => f.type))}`));
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        waiters.delete(check);
      };
      waiters.add(check);
      check();
    });
  }

  const agent: TestAgent = {
    ws,
    frames,
    pushes: () => frames.filter((f): f is PushFrame => f.type === 'push'),
    artifacts: () => frames.filter((f): f is ArtifactFrame => f.type === 'artifact'),
    send: (frame) => ws.send(JSON.stringify(frame)),
    sendRaw: (data, binary = false) => ws.send(data, { binary }),
    async subscribe(projects, resumeAfter) {
      const before = frames.filter((f) => f.type === 'subscribed').length;
      agent.send({ type: 'subscribe', projects, ...(resumeAfter === undefined ? {} : { resumeAfter }) });
      let count = 0;
      return (await waitFor((f) => f.type === 'subscribed' && ++count > before)) as Extract<ServerFrame, { type: 'subscribed' }>;
    },
    waitFor: waitFor as TestAgent['waitFor'],
    closed,
    async close() {
      if (ws.readyState !== WebSocket.CLOSED) {
        ws.close();
        await closed;
      }
    },
  };

  return new Promise((resolve, reject) => {
    ws.once('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (chunk: Buffer) => (body += chunk.toString()));
      res.on('end', () => reject(Object.assign(new Error(`upgrade refused: ${res.statusCode} ${body}`), { status: res.statusCode, body })));
    });
    ws.once('error', reject);
    // The hello frame is the server's first word; a socket that never says it is not usable.
    waitFor((f) => f.type === 'hello', 5000).then(() => resolve(agent), (err: Error) => {
      if (ws.readyState === WebSocket.CLOSED) closed.then(({ code, reason }) => reject(Object.assign(new Error(`closed ${code} ${reason}`), { code })));
      else reject(err);
    });
  });
}

/** Resolves once `predicate` holds, polling; for state that settles asynchronously. */
export async function eventually<T>(probe: () => Promise<T> | T, predicate: (value: T) => boolean, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (predicate(value)) return value;
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms; last value: ${JSON.stringify(value)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
