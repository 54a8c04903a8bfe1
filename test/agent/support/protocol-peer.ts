/**
 * A scripted kasgate.v1 peer over a real WebSocket, for agent behaviours the real gateway cannot
 * be made to show on demand (a resync, a revoked token, a redelivered event, a dropped socket).
 * The end-to-end suite runs the agent against the real gateway.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';
import {
  CONNECT_PATH,
  SUBPROTOCOL,
  parseClientFrame,
  type ClientFrame,
  type ServerFrame,
} from '../../../src/protocol/kasgate-v1.js';
import { waitFor } from './wait.js';

export class PeerConnection {
  readonly frames: ClientFrame[] = [];
  /** The text of every frame, as it came (to check sizes), with the time it came. */
  readonly raw: { text: string; at: number }[] = [];
  /** Frames that did not parse as kasgate.v1 (the real gateway answers them with an error frame). */
  readonly invalid: string[] = [];
  closed = false;

  constructor(
    readonly socket: WebSocket,
    readonly authorization: string | undefined,
    answerSubscribes: boolean,
  ) {
    socket.on('message', (data) => {
      const text = data.toString();
      this.raw.push({ text, at: Date.now() });
      const parsed = parseClientFrame(text);
      if (!parsed.ok) {
        this.invalid.push(`${parsed.message}: ${text.slice(0, 200)}`);
        return;
      }
      this.frames.push(parsed.frame);
      if (answerSubscribes && parsed.frame.type === 'subscribe') {
        this.send({ type: 'subscribed', projects: parsed.frame.projects.map((path) => ({ path, access: 'granted' })) });
      }
    });
    socket.on('close', () => (this.closed = true));
  }

  send(frame: ServerFrame): void {
    this.socket.send(JSON.stringify(frame));
  }

  framesOf<T extends ClientFrame['type']>(type: T): Extract<ClientFrame, { type: T }>[] {
    return this.frames.filter((f): f is Extract<ClientFrame, { type: T }> => f.type === type);
  }

  async nextFrame<T extends ClientFrame['type']>(type: T, after = 0, timeoutMs = 5000): Promise<Extract<ClientFrame, { type: T }>> {
    await waitFor(() => this.framesOf(type).length > after, timeoutMs, `a ${type} frame`);
    return this.framesOf(type)[after] as Extract<ClientFrame, { type: T }>;
  }

  close(code: number, reason = ''): void {
    this.socket.close(code, reason);
  }
}

export class ProtocolPeer {
  readonly connections: PeerConnection[] = [];
  /** HTTP statuses refused at the upgrade. */
  readonly refused: number[] = [];
  helloConfig: Record<string, unknown> = {};
  /** `limits` of the hello frame; none (as an older gateway) when undefined. */
  helloLimits: { maxFrameBytes: number; maxStatusObjects?: number } | undefined;
  /** Answer every subscribe with `subscribed` (all granted), as the gateway does. */
  answerSubscribes = false;
  heartbeatSeconds = 30;
  private server: http.Server | undefined;
  private wss: WebSocketServer | undefined;
  url = '';

  constructor(public token: string) {}

  async start(): Promise<this> {
    this.server = http.createServer((_req, res) => res.writeHead(404).end());
    this.wss = new WebSocketServer({
      noServer: true,
      handleProtocols: (protocols) => (protocols.has(SUBPROTOCOL) ? SUBPROTOCOL : false),
    });
    this.server.on('upgrade', (req, socket, head) => {
      if (req.url !== CONNECT_PATH || req.headers.authorization !== `Bearer ${this.token}`) {
        const status = req.url !== CONNECT_PATH ? 404 : 401;
        this.refused.push(status);
        socket.end(`HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`);
        return;
      }
      this.wss?.handleUpgrade(req, socket, head, (ws) => {
        const connection = new PeerConnection(ws, req.headers.authorization, this.answerSubscribes);
        this.connections.push(connection);
        connection.send({
          type: 'hello',
          agentId: 'agent-1',
          connectionId: `conn-${this.connections.length}`,
          heartbeatSeconds: this.heartbeatSeconds,
          config: this.helloConfig,
          ...(this.helloLimits ? { limits: this.helloLimits } : {}),
        });
      });
    });
    await new Promise<void>((resolve) => this.server?.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  async connection(index: number, timeoutMs = 5000): Promise<PeerConnection> {
    await waitFor(() => this.connections.length > index, timeoutMs, `connection #${index + 1}`);
    return this.connections[index] as PeerConnection;
  }

  async close(): Promise<void> {
    for (const c of this.wss?.clients ?? []) c.terminate();
    this.wss?.close();
    this.server?.closeAllConnections();
    await new Promise<void>((resolve) => this.server?.close(() => resolve()) ?? resolve());
  }
}
