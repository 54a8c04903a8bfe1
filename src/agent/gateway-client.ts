/**
 * The agent's side of `kasgate.v1`: one outbound WebSocket to the gateway, kept open.
 * Reconnects with capped exponential backoff and jitter; at once (after a short jitter) when a
 * replica shuts down (1012); never again once the token is revoked (4401 or HTTP 401/403).
 */
import WebSocket from 'ws';
import type { Logger } from 'pino';
import {
  CONNECT_PATH,
  CloseCode,
  SUBPROTOCOL,
  parseServerFrame,
  type ArtifactFrame,
  type ClientFrame,
  type ConfigFrame,
  type CredentialsFrame,
  type ErrorFrame,
  type HelloFrame,
  type PushFrame,
  type ResyncFrame,
  type SubscribedFrame,
} from '../protocol/kasgate-v1.js';
import { backoffDelay, sleep, type BackoffPolicy } from './backoff.js';

export interface GatewayHandlers {
  onHello(frame: HelloFrame): void;
  /** The agent's configuration changed on the gateway, on a live connection. */
  onConfig(frame: ConfigFrame): void;
  onSubscribed(frame: SubscribedFrame): void;
  onPush(frame: PushFrame): void;
  onArtifact(frame: ArtifactFrame): void;
  onResync(frame: ResyncFrame): void;
  /** Flux's credentials to write as a Secret; the answer goes back with send(). */
  onCredentials(frame: CredentialsFrame): void;
  /** The gateway reported an error about a frame the agent sent (already logged). */
  onError(frame: ErrorFrame): void;
  onConnectedChange(connected: boolean): void;
}

export interface GatewayClientOptions {
  baseUrl: string;
  /** Read on every attempt, so a rotated token file is picked up without a restart. */
  readToken: () => Promise<string>;
  reconnect: BackoffPolicy;
  logger: Logger;
  handlers: GatewayHandlers;
}

export class TokenRevokedError extends Error {
  override name = 'TokenRevokedError';
}

/** `${base}/agent/v1/connect` as a ws(s) URL; a path on the base URL is kept. */
export function connectUrl(baseUrl: string): URL {
  const url = new URL(baseUrl);
  if (url.protocol === 'http:') url.protocol = 'ws:';
  if (url.protocol === 'https:') url.protocol = 'wss:';
  url.pathname = url.pathname.replace(/\/+$/, '') + CONNECT_PATH;
  url.search = '';
  url.hash = '';
  return url;
}

const MAX_FRAME_BYTES = 1024 * 1024;
const HANDSHAKE_TIMEOUT_MS = 10_000;
/** Before the hello says otherwise. */
const DEFAULT_HEARTBEAT_SECONDS = 30;

interface AttemptOutcome {
  code: number;
  helloSeen: boolean;
  httpStatus?: number;
}

export class GatewayClient {
  private readonly url: URL;
  private readonly stop = new AbortController();
  private socket: WebSocket | undefined;
  private helloSeen = false;
  /** Settles when the client stops for good: resolves after close(), rejects when the token is revoked. */
  readonly done: Promise<void>;

  constructor(private readonly options: GatewayClientOptions) {
    this.url = connectUrl(options.baseUrl);
    this.done = this.run();
    // The owner observes `done`; keep an unobserved rejection from crashing the process meanwhile.
    this.done.catch(() => {});
  }

  /** True once the hello frame has arrived on the current socket. */
  get ready(): boolean {
    return this.helloSeen && this.socket?.readyState === WebSocket.OPEN;
  }

  send(frame: ClientFrame): boolean {
    return this.sendText(JSON.stringify(frame));
  }

  /** Sends a frame serialized by the caller (status frames are sized to the byte). */
  sendText(text: string): boolean {
    if (!this.ready || !this.socket) return false;
    this.socket.send(text);
    return true;
  }

  async close(): Promise<void> {
    this.stop.abort();
    await this.done.catch(() => {});
  }

  private async run(): Promise<void> {
    const log = this.options.logger;
    let failures = 0;
    while (!this.stop.signal.aborted) {
      const outcome = await this.attempt();
      if (this.stop.signal.aborted) break;
      if (outcome.code === CloseCode.Revoked || outcome.httpStatus === 401 || outcome.httpStatus === 403) {
        log.error({ code: outcome.code, httpStatus: outcome.httpStatus }, 'gateway rejected the agent token; not reconnecting');
        throw new TokenRevokedError('the gateway rejected the agent token (revoked, or the agent was deleted)');
      }
      if (outcome.helloSeen) failures = 0;
      const delay =
        outcome.code === CloseCode.ReplicaShutdown && outcome.helloSeen
          ? Math.round(Math.random() * 250)
          : backoffDelay(failures++, this.options.reconnect);
      log.info({ code: outcome.code, httpStatus: outcome.httpStatus, delayMs: delay }, 'gateway connection ended; reconnecting');
      await sleep(delay, this.stop.signal);
    }
  }

  private async attempt(): Promise<AttemptOutcome> {
    const { logger: log, handlers } = this.options;
    let token: string;
    try {
      token = await this.options.readToken();
    } catch (err) {
      log.error({ err: err instanceof Error ? err.message : String(err) }, 'cannot read the agent token');
      return { code: 1006, helloSeen: false };
    }
    if (this.stop.signal.aborted) return { code: 1000, helloSeen: false };
    return new Promise<AttemptOutcome>((resolve) => {
      const outcome: AttemptOutcome = { code: 1006, helloSeen: false };
      this.helloSeen = false;
      const socket = new WebSocket(this.url, SUBPROTOCOL, {
        headers: { authorization: `Bearer ${token}` },
        maxPayload: MAX_FRAME_BYTES,
        handshakeTimeout: HANDSHAKE_TIMEOUT_MS,
      });
      this.socket = socket;
      let watchdog: NodeJS.Timeout | undefined;
      let heartbeatSeconds = DEFAULT_HEARTBEAT_SECONDS;
      // The server pings every heartbeatSeconds; silence for 2.5 intervals means a dead path.
      const armWatchdog = (): void => {
        clearTimeout(watchdog);
        watchdog = setTimeout(() => {
          log.warn({ heartbeatSeconds }, 'no ping from the gateway; dropping the connection');
          socket.terminate();
        }, heartbeatSeconds * 2500);
      };
      const onAbort = (): void => {
        socket.close(1000, 'agent stopping');
        // Do not wait out ws' 30 s closing handshake on a gateway that does not answer.
        setTimeout(() => socket.terminate(), 2000).unref();
      };
      this.stop.signal.addEventListener('abort', onAbort, { once: true });

      socket.on('unexpected-response', (_request, response) => {
        outcome.httpStatus = response.statusCode;
        response.resume();
        socket.terminate();
      });
      socket.on('open', () => {
        log.info({ url: this.url.origin + this.url.pathname }, 'connected to the gateway');
        armWatchdog();
      });
      socket.on('ping', armWatchdog);
      socket.on('message', (data, isBinary) => {
        armWatchdog();
        if (isBinary) return log.warn('ignoring a binary frame from the gateway');
        const parsed = parseServerFrame(data.toString());
        if (!parsed.ok) return log.warn({ code: parsed.code, message: parsed.message }, 'ignoring a bad frame from the gateway');
        const frame = parsed.frame;
        switch (frame.type) {
          case 'hello':
            heartbeatSeconds = frame.heartbeatSeconds;
            armWatchdog();
            this.helloSeen = true;
            outcome.helloSeen = true;
            handlers.onConnectedChange(true);
            handlers.onHello(frame);
            return;
          case 'config':
            return handlers.onConfig(frame);
          case 'subscribed':
            return handlers.onSubscribed(frame);
          case 'push':
            return handlers.onPush(frame);
          case 'artifact':
            return handlers.onArtifact(frame);
          case 'resync':
            return handlers.onResync(frame);
          case 'credentials':
            return handlers.onCredentials(frame);
          case 'error':
            log.warn({ code: frame.code, message: frame.message }, 'the gateway reported an error');
            return handlers.onError(frame);
        }
      });
      socket.on('error', (err) => {
        if (outcome.httpStatus === undefined) log.warn({ err: err.message }, 'gateway connection error');
      });
      socket.on('close', (code) => {
        clearTimeout(watchdog);
        this.stop.signal.removeEventListener('abort', onAbort);
        if (this.helloSeen) handlers.onConnectedChange(false);
        this.helloSeen = false;
        outcome.code = code;
        resolve(outcome);
      });
    });
  }
}
