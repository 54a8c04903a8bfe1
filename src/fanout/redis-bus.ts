import { randomUUID } from 'node:crypto';
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
  // This replica's own doorbells come back too, and it dispatched their events already: they are
  // dropped unparsed (a doorbell carries its batch's events; parsing them was 3 % of the busy
  // time). The origin is this process's own (a configured replica id may be shared by mistake);
  // replicas of older versions ignore it.
  const origin = randomUUID();
  const ownDoorbell = `{"type":"events","origin":"${origin}",`;
  const handlers: ((message: BusMessage) => void)[] = [];
  const reconnectHandlers: (() => void)[] = [];
  let joined = false;
  let everJoined = false;
  let closing = false;

  subscriber.on('message', (ch: string, text: string) => {
    if (ch !== channel || text.startsWith(ownDoorbell)) return;
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
      let text: string;
      if (message.type === 'events') {
        const { type, ...batch } = message;
        text = JSON.stringify({ type, origin, ...batch });
      } else text = JSON.stringify(message);
      await publisher.publish(channel, text);
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
