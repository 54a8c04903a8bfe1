/**
 * A TCP proxy for outage tests (node:net): put it between the gateway and a real server
 * (Postgres, Redis, an HTTP endpoint) and break the path on demand.
 *
 * - cut():       every open connection is reset and new ones are reset at once (a crashed
 *                server or a refused port: the client learns fast).
 * - blackhole(): connections stay open but nothing passes either way, and new connections are
 *                accepted and never answered (a partition: the client learns only by timing out).
 * - restore():   new connections are forwarded again. Connections opened before or during the
 *                outage are reset, as a real partition or restart would have left them.
 */
import net from 'node:net';

export interface TcpProxy {
  /** The local port to point the client at (127.0.0.1). */
  port: number;
  /** Connections currently open through the proxy. */
  readonly connections: number;
  cut(): void;
  blackhole(): void;
  restore(): void;
  close(): Promise<void>;
}

type Mode = 'forward' | 'cut' | 'blackhole';

interface Pair {
  client: net.Socket;
  upstream: net.Socket | undefined;
}

export async function startTcpProxy(targetHost: string, targetPort: number): Promise<TcpProxy> {
  let mode: Mode = 'forward';
  const pairs = new Set<Pair>();

  const drop = (pair: Pair) => {
    pair.client.destroy();
    pair.upstream?.destroy();
    pairs.delete(pair);
  };

  const server = net.createServer((client) => {
    const pair: Pair = { client, upstream: undefined };
    pairs.add(pair);
    client.on('error', () => drop(pair));
    client.on('close', () => drop(pair));
    if (mode === 'cut') {
      client.resetAndDestroy();
      return;
    }
    if (mode === 'blackhole') {
      client.pause();
      return;
    }
    const upstream = net.connect({ host: targetHost, port: targetPort });
    pair.upstream = upstream;
    upstream.on('error', () => drop(pair));
    upstream.on('close', () => drop(pair));
    // Forward by hand rather than pipe(), so that a blackhole can stop the flow mid-stream.
    client.on('data', (chunk) => {
      if (mode === 'forward') upstream.write(chunk);
    });
    upstream.on('data', (chunk) => {
      if (mode === 'forward') client.write(chunk);
    });
  });
  server.on('error', () => {});
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;

  const resetAll = () => {
    for (const pair of pairs) {
      if (!pair.client.destroyed) pair.client.resetAndDestroy();
      pair.upstream?.destroy();
      pairs.delete(pair);
    }
  };

  return {
    port,
    get connections() {
      return pairs.size;
    },
    cut() {
      mode = 'cut';
      resetAll();
    },
    blackhole() {
      mode = 'blackhole';
    },
    restore() {
      if (mode === 'forward') return;
      mode = 'forward';
      resetAll();
    },
    async close() {
      resetAll();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** The same, under the short name the outage tests use: `start(host, port)`. */
export { startTcpProxy as start };
