/** Messages between the runner and its subscriber processes (IPC). */
export interface ClientSpec {
  url: string;
  /** Absent for the floor, which does not authenticate. */
  token?: string;
  projects: string[];
  /**
   * Report Flux status as an agent would, with controllers that take no time: a GitRepository on
   * this project (branch main) and a Kustomization on it, and on every push both at its commit.
   */
  status?: { project: string };
}

export interface Collected {
  frames: number;
  firstUs: number;
  lastUs: number;
  /** Push → receive latency of every frame since the reset, in µs, when asked for. */
  samples: number[];
  /** Per push (`after` sha): frames received and when the last one arrived. */
  keys: Record<string, { count: number; lastUs: number }>;
  open: number;
  unexpectedCloses: number;
}

export type SubscriberRequest = { id: number } & (
  | { cmd: 'connect'; clients: ClientSpec[]; localAddresses: string[]; concurrency: number }
  | { cmd: 'reset'; samples: boolean }
  | { cmd: 'collect' }
  | { cmd: 'close' }
);

export type SubscriberReply =
  | { cmd: 'connected'; connected: number; failed: number; retried: number; errors: string[] }
  | { cmd: 'collected'; collected: Collected }
  | { cmd: 'done' };
