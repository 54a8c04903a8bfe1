/**
 * The real `kasgate` command (src/main.ts through tsx) as a child process, so that exit codes,
 * SIGTERM and SIGKILL mean what they mean in production. Output is kept for assertions.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll } from 'vitest';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const KEPT_LINES = 3000;

/** Children still running, killed if the test process goes away first. */
const live = new Set<ChildProcess>();
const killLive = () => {
  for (const child of live) child.kill('SIGKILL');
};
process.once('exit', killLive);
// vitest ends its fork workers without an 'exit' event: without this, a test that failed before
// stopping its child (a timeout waiting for a log line) left a gateway running for good.
afterAll(killLive);

/** Kills the child with the test process, whatever happens to the test. */
export function killWithTests(child: ChildProcess): ChildProcess {
  live.add(child);
  child.once('exit', () => live.delete(child));
  return child;
}

export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Milliseconds from the first signal sent by kill()/stop() to the exit. */
  afterSignalMs: number | undefined;
}

export interface KasgateProcess {
  child: ChildProcess;
  /** Everything written so far to stdout and stderr (the last few thousand lines). */
  output(): string;
  lines(): string[];
  /** Resolves with the first JSON log line whose msg matches, already written or to come. */
  waitForLog(msg: RegExp, timeoutMs?: number): Promise<Record<string, unknown>>;
  exited: Promise<ExitStatus>;
  kill(signal: NodeJS.Signals): void;
  /** SIGTERM, then the exit. */
  stop(): Promise<ExitStatus>;
}

function logEntry(line: string): Record<string, unknown> | undefined {
  if (!line.startsWith('{')) return undefined;
  try {
    return JSON.parse(line) as Record<string, unknown>;
  } catch {
    return undefined;
  }
}

export function spawnKasgate(args: string[], env: Record<string, string>): KasgateProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts', ...args], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  killWithTests(child);
  const lines: string[] = [];
  const watchers = new Set<() => void>();
  let signalledAt: number | undefined;
  for (const stream of [child.stdout!, child.stderr!]) {
    let partial = '';
    stream.on('data', (chunk: Buffer) => {
      const parts = (partial + chunk.toString()).split('\n');
      partial = parts.pop()!;
      lines.push(...parts);
      if (lines.length > KEPT_LINES) lines.splice(0, lines.length - KEPT_LINES);
      for (const wake of watchers) wake();
    });
    stream.on('end', () => {
      if (partial) lines.push(partial);
    });
  }
  const exited = new Promise<ExitStatus>((resolve) =>
    child.once('exit', (code, signal) => {
      resolve({ code, signal, afterSignalMs: signalledAt === undefined ? undefined : Date.now() - signalledAt });
      for (const wake of watchers) wake();
    }),
  );
  const kill = (signal: NodeJS.Signals) => {
    signalledAt ??= Date.now();
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
  };

  return {
    child,
    output: () => lines.join('\n'),
    lines: () => [...lines],
    exited,
    kill,
    stop() {
      kill('SIGTERM');
      return exited;
    },
    waitForLog(msg, timeoutMs = 20_000) {
      return new Promise((resolve, reject) => {
        let seen = 0;
        const check = () => {
          for (; seen < lines.length; seen++) {
            const entry = logEntry(lines[seen]!);
            if (entry && typeof entry.msg === 'string' && msg.test(entry.msg)) return finish(() => resolve(entry));
          }
          if (child.exitCode !== null || child.signalCode !== null) {
            finish(() => reject(new Error(`exited before logging ${msg}:\n${lines.slice(-40).join('\n')}`)));
          }
        };
        const timer = setTimeout(
          () => finish(() => reject(new Error(`no log line ${msg} within ${timeoutMs} ms:\n${lines.slice(-40).join('\n')}`))),
          timeoutMs,
        );
        const finish = (settle: () => void) => {
          clearTimeout(timer);
          watchers.delete(check);
          settle();
        };
        watchers.add(check);
        check();
      });
    },
  };
}
