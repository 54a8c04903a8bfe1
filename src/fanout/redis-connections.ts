/**
 * The gateway's two Redis connections (commands, and the bus's subscriber), made without waiting
 * for Redis: a replica that starts before Redis, or while it is away, serves at once.
 */
import { Redis, type RedisOptions } from 'ioredis';
import type { Logger } from 'pino';
import { describeRedisError, redisAddress } from './redis-failure.js';

const REDIS_OPTIONS: RedisOptions = {
  // Fail fast while Redis is away: Postgres is the log, and the sweep catches up afterwards.
  maxRetriesPerRequest: 1,
  commandTimeout: 1000,
  connectTimeout: 2000,
  retryStrategy: (attempt) => Math.min(attempt * 200, 2000),
};

export interface RedisConnections {
  client: Redis;
  subscriber: Redis;
  /** The latest connection error of either connection, cleared once both are ready again. */
  lastError(): Error | undefined;
}

/**
 * Connects to Redis without waiting for it: a replica that starts before Redis (or while it is
 * away) serves at once, and joins the bus when Redis comes (see redis-bus.ts).
 */
export async function connectRedis(url: string, log: Logger): Promise<RedisConnections> {
  const client = new Redis(url, { ...REDIS_OPTIONS, enableOfflineQueue: false, connectionName: 'kasgate' });
  // The bus subscribes (again) whenever this connection becomes ready; nothing is queued meanwhile.
  const subscriber = new Redis(url, {
    ...REDIS_OPTIONS,
    commandTimeout: undefined,
    enableOfflineQueue: false,
    autoResubscribe: false,
    connectionName: 'kasgate-sub',
  });
  const errors = new Map<string, Error>();
  for (const [name, conn] of [['client', client], ['subscriber', subscriber]] as const) {
    conn.on('error', (err: Error) => {
      errors.set(name, err);
      log.debug({ err: err.message, conn: name }, 'redis error');
    });
    conn.on('ready', () => errors.delete(name));
  }
  // Wait a moment for the first connection (or its first failure), so that the log says which.
  const settled = await new Promise<'ready' | 'error' | 'timeout'>((resolve) => {
    const timer = setTimeout(() => resolve('timeout'), 5000);
    timer.unref();
    client.once('ready', () => resolve('ready'));
    client.once('error', () => resolve('error'));
  });
  if (settled !== 'ready') {
    log.warn(
      { redis: redisAddress(url), reason: describeRedisError(errors.get('client')) },
      'redis is not reachable yet; serving anyway (cross-replica fan-out by the periodic sweep) and joining the bus when it comes',
    );
  }
  return { client, subscriber, lastError: () => errors.get('client') ?? errors.get('subscriber') };
}
