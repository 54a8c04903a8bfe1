/**
 * A TCP proxy a test puts between the gateway and Postgres, to make Postgres unreachable on demand:
 *  - cut(): every connection is dropped and the port stops accepting (connections are refused);
 *  - blackhole(): connections stay open and new ones are accepted, but no byte gets through (a
 *    network partition, the worst case: nothing fails, everything waits);
 *  - restore(): back to forwarding; black-holed connections resume where they stalled.
 */
import net from 'node:net';

interface Pair {
  client: net.Socket;
  upstream: net.Socket | undefined;
}

export interface TcpProxy {
  host: string;
  port: number;
  /** Connections the proxy holds open right now. */
  readonly openConnections: number;
  cut(): Promise<void>;
  blackhole(): void;
  restore(): Promise<void>;
  close(): Promise<void>;
}

export async function startTcpProxy(target: { host: string; port: number }): Promise<TcpProxy> {
  const pairs = new Set<Pair>();
  let mode: 'forward' | 'blackhole' | 'cut' = 'forward';

  function link(pair: Pair): void {
    if (!pair.upstream) {
      const upstream = net.connect(target);
      pair.upstream = upstream;
      upstream.on('error', () => pair.client.destroy());
      upstream.on('close', () => pair.client.destroy());
    }
    pair.client.pipe(pair.upstream);
    pair.upstream.pipe(pair.client);
  }

  function stall(pair: Pair): void {
    pair.client.unpipe();
    pair.client.pause();
    pair.upstream?.unpipe();
    pair.upstream?.pause();
  }

  const server = net.createServer((client) => {
    const pair: Pair = { client, upstream: undefined };
    pairs.add(pair);
    client.on('error', () => {});
    client.on('close', () => {
      pair.upstream?.destroy();
      pairs.delete(pair);
    });
    if (mode === 'forward') link(pair);
    else client.pause();
  });

  const listen = (port: number) =>
    new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
  await listen(0);
  const { port } = server.address() as net.AddressInfo;

  return {
    host: '127.0.0.1',
    port,
    get openConnections() {
      return pairs.size;
    },
    async cut() {
      mode = 'cut';
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const pair of pairs) {
        pair.client.destroy();
        pair.upstream?.destroy();
      }
      await closed;
    },
    blackhole() {
      mode = 'blackhole';
      for (const pair of pairs) stall(pair);
    },
    async restore() {
      if (mode === 'cut') await listen(port);
      mode = 'forward';
      for (const pair of pairs) link(pair);
    },
    async close() {
      mode = 'cut';
      for (const pair of pairs) {
        pair.client.destroy();
        pair.upstream?.destroy();
      }
      if (server.listening) await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
