/**
 * The runner's handle on its subscriber processes: spreads agent sockets over them (and over
 * several loopback source addresses, so that tens of thousands of sockets don't run out of
 * ephemeral ports), and merges what they recorded.
 */
import { fork, type ChildProcess } from 'node:child_process';
import type { ClientSpec, Collected, SubscriberReply, SubscriberRequest } from './subscriber-protocol.js';

const SCRIPT = new URL('./subscriber-process.ts', import.meta.url).pathname;
const LOCAL_ADDRESSES = Array.from({ length: 8 }, (_, i) => `127.0.0.${i + 1}`);
type Request = SubscriberRequest extends infer R ? (R extends { id: number } ? Omit<R, 'id'> : never) : never;

export interface Merged {
  frames: number;
  firstUs: number;
  lastUs: number;
  samples: number[];
  keys: Map<string, { count: number; lastUs: number }>;
  open: number;
  unexpectedCloses: number;
}

export class SubscriberPool {
  private readonly children: ChildProcess[];
  private nextId = 0;
  private readonly waiting = new Map<number, (reply: SubscriberReply) => void>();

  constructor(processes: number) {
    this.children = Array.from({ length: processes }, () => {
      const child = fork(SCRIPT, [], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
      child.on('message', (reply: SubscriberReply & { id: number }) => this.waiting.get(reply.id)?.(reply));
      return child;
    });
  }

  private ask(child: ChildProcess, request: Request, timeoutMs = 300_000): Promise<SubscriberReply> {
    const id = ++this.nextId;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`subscriber process did not answer ${request.cmd}`)), timeoutMs);
      this.waiting.set(id, (reply) => {
        clearTimeout(timer);
        this.waiting.delete(id);
        resolve(reply);
      });
      child.send({ ...request, id });
    });
  }

  private all(request: Request): Promise<SubscriberReply[]> {
    return Promise.all(this.children.map((child) => this.ask(child, request)));
  }

  /**
   * Connects every client (round-robin over the processes); throws if any failed for good.
   * Returns how many attempts had to be retried, and why.
   */
  async connect(clients: ClientSpec[], concurrencyPerProcess = 64): Promise<{ retried: number; errors: string[] }> {
    const shares: ClientSpec[][] = this.children.map(() => []);
    clients.forEach((client, i) => shares[i % shares.length]!.push(client));
    const replies = await Promise.all(
      this.children.map((child, i) =>
        this.ask(child, { cmd: 'connect', clients: shares[i]!, localAddresses: LOCAL_ADDRESSES, concurrency: concurrencyPerProcess }),
      ),
    );
    const count = (pick: (r: Extract<SubscriberReply, { cmd: 'connected' }>) => number) =>
      replies.reduce((n, r) => n + (r.cmd === 'connected' ? pick(r) : 0), 0);
    const errors = [...new Set(replies.flatMap((r) => (r.cmd === 'connected' ? r.errors : [])))];
    const failed = count((r) => r.failed);
    if (failed > 0) throw new Error(`${failed} of ${clients.length} agent sockets failed to connect: ${errors.join('; ')}`);
    return { retried: count((r) => r.retried), errors };
  }

  get pids(): number[] {
    return this.children.map((child) => child.pid!);
  }

  async reset(samples = false): Promise<void> {
    await this.all({ cmd: 'reset', samples });
  }

  async collect(): Promise<Merged> {
    const replies = await this.all({ cmd: 'collect' });
    const merged: Merged = { frames: 0, firstUs: 0, lastUs: 0, samples: [], keys: new Map(), open: 0, unexpectedCloses: 0 };
    for (const reply of replies) {
      if (reply.cmd !== 'collected') continue;
      const c: Collected = reply.collected;
      merged.frames += c.frames;
      if (c.firstUs > 0 && (merged.firstUs === 0 || c.firstUs < merged.firstUs)) merged.firstUs = c.firstUs;
      merged.lastUs = Math.max(merged.lastUs, c.lastUs);
      for (const s of c.samples) merged.samples.push(s);
      for (const [key, entry] of Object.entries(c.keys)) {
        const known = merged.keys.get(key);
        if (known) {
          known.count += entry.count;
          known.lastUs = Math.max(known.lastUs, entry.lastUs);
        } else merged.keys.set(key, { ...entry });
      }
      merged.open += c.open;
      merged.unexpectedCloses += c.unexpectedCloses;
    }
    return merged;
  }

  /** Polls until `done` holds for what was collected, or the timeout passes; returns the last collection. */
  async until(done: (merged: Merged) => boolean, timeoutMs: number, pollMs = 25): Promise<Merged> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const merged = await this.collect();
      if (done(merged) || Date.now() > deadline) return merged;
      await new Promise((r) => setTimeout(r, pollMs));
    }
  }

  /** Waits until no new frame arrived for `quietMs` (or `expected` frames arrived). */
  async settle(expected: number, quietMs = 500, timeoutMs = 30_000): Promise<Merged> {
    let last = -1;
    let since = Date.now();
    return this.until((m) => {
      if (m.frames >= expected) return true;
      if (m.frames !== last) {
        last = m.frames;
        since = Date.now();
      }
      return Date.now() - since >= quietMs;
    }, timeoutMs, 50);
  }

  async closeAll(): Promise<void> {
    await this.all({ cmd: 'close' });
  }

  stop(): void {
    for (const child of this.children) child.disconnect();
  }
}
