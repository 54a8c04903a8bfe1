/**
 * A TCP relay between the agent and the gateway, to cut the agent off (a network partition)
 * while the gateway keeps taking webhooks. It forwards bytes and knows nothing of the protocol.
 */
import net from 'node:net';
import type { AddressInfo } from 'node:net';

export class TcpRelay {
  private server: net.Server | undefined;
  private readonly sockets = new Set<net.Socket>();
  private blocked = false;
  /** Connections refused while blocked: proof that the agent kept trying. */
  refusedWhileBlocked = 0;
  url = '';

  constructor(private readonly target: { host: string; port: number }) {}

  async start(): Promise<this> {
    this.server = net.createServer((client) => {
      if (this.blocked) {
        this.refusedWhileBlocked++;
        client.destroy();
        return;
      }
      const upstream = net.connect(this.target);
      for (const socket of [client, upstream]) {
        this.sockets.add(socket);
        socket.on('close', () => this.sockets.delete(socket));
        socket.on('error', () => {
          client.destroy();
          upstream.destroy();
        });
      }
      client.pipe(upstream);
      upstream.pipe(client);
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
    });
    await new Promise<void>((resolve) => this.server?.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  /** Drops every relayed connection and refuses new ones. */
  block(): void {
    this.blocked = true;
    for (const socket of this.sockets) socket.destroy();
  }

  unblock(): void {
    this.blocked = false;
  }

  async close(): Promise<void> {
    this.block();
    await new Promise<void>((resolve) => this.server?.close(() => resolve()) ?? resolve());
  }
}
