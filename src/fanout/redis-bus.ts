import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Bus, BusMessage } from './bus.js';

/**
 * Redis pub/sub bus: one channel per deployment prefix. `publisher` is the shared command
 * connection; `subscriber` is dedicated (a subscribed connection can issue nothing else).
 */
export function createRedisBus(publisher: Redis, subscriber: Redis, prefix: string, log: Logger): Bus {
  const channel = `${prefix}bus`;
  const handlers: ((message: BusMessage) => void)[] = [];
  const reconnectHandlers: (() => void)[] = [];
  let lostConnection = false;

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
    if (!lostConnection) log.warn('redis subscriber connection lost; catching up from postgres when it returns');
    lostConnection = true;
  });
  subscriber.on('ready', () => {
    if (!lostConnection) return;
    lostConnection = false;
    // Catch up only once the channel is subscribed again, or a doorbell could slip between.
    subscriber.subscribe(channel).then(
      () => {
        log.info('redis subscriber connection back');
        for (const handler of reconnectHandlers) handler();
      },
      (err: Error) => log.warn({ err: err.message }, 'resubscribing to the bus failed; the sweep catches up'),
    );
  });
  const subscribed = subscriber.subscribe(channel);

  return {
    kind: 'redis',
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
      await subscribed.catch(() => {});
      await subscriber.unsubscribe(channel).catch(() => {});
    },
  };
}
