import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Bus, BusMessage } from './bus.js';

/**
 * Redis pub/sub bus: one channel per deployment prefix. `publisher` is the shared command
 * connection; `subscriber` is dedicated (a subscribed connection can issue nothing else).
 *
 * The subscriber subscribes each time its connection becomes ready: at start (Redis may come up
 * only later: the replica joins the bus then), and after every reconnect. Once subscribed, the
 * reconnect handlers run, so that the replica catches up from Postgres on what it may have
 * missed; until then the periodic sweep does.
 */
export function createRedisBus(publisher: Redis, subscriber: Redis, prefix: string, log: Logger): Bus {
  const channel = `${prefix}bus`;
  const handlers: ((message: BusMessage) => void)[] = [];
  const reconnectHandlers: (() => void)[] = [];
  let joined = false;
  let everJoined = false;
  let closing = false;

  subscriber.on('message', (ch: string, text: string) => {
    if (ch !== channel) return;
    let message: BusMessage;
    try {
      message = JSON.parse(text) as BusMessage;
    } catch {
      log.warn({ channel }, 'ignoring a bus message that is not JSON');
      return;
    }
    for (const handler of handlers) handler(message);
  });
  subscriber.on('close', () => {
    if (joined && !closing) log.warn('redis subscriber connection lost; catching up from postgres when it returns');
    joined = false;
  });
  function join(): void {
    if (closing) return;
    // Catch up only once the channel is subscribed again, or a doorbell could slip between.
    subscriber.subscribe(channel).then(
      () => {
        if (closing) return;
        joined = true;
        log.info(everJoined ? 'redis subscriber connection back' : 'joined the redis bus');
        everJoined = true;
        for (const handler of reconnectHandlers) handler();
      },
      (err: Error) => {
        if (!closing) log.warn({ err: err.message }, 'subscribing to the bus failed; retrying when the connection is ready again, the sweep catches up meanwhile');
      },
    );
  }
  subscriber.on('ready', join);
  if (subscriber.status === 'ready') join();

  return {
    kind: 'redis',
    get joined() {
      return joined;
    },
    async publish(message) {
      await publisher.publish(channel, JSON.stringify(message));
    },
    onMessage(handler) {
      handlers.push(handler);
    },
    onReconnect(handler) {
      reconnectHandlers.push(handler);
    },
    async close() {
      closing = true;
      if (joined) await subscriber.unsubscribe(channel).catch(() => {});
      joined = false;
    },
  };
}
