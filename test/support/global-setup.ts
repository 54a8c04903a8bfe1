/**
 * Finds the PostgreSQL and Redis the suite runs against: DATABASE_URL / REDIS_URL, else the local
 * servers on their standard ports, else (where a Docker engine answers) containers started by
 * testcontainers. Otherwise it fails, saying what to start.
 */
import net from 'node:net';
import type { TestProject } from 'vitest/node';

declare module 'vitest' {
  interface ProvidedContext {
    databaseUrl: string;
    redisUrl: string;
  }
}

const DEFAULT_DATABASE_URL = 'postgres://postgres@127.0.0.1:5432/test';
const DEFAULT_REDIS_URL = 'redis://127.0.0.1:6379';

function reachable(url: string, fallbackPort: number): Promise<boolean> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const socket = net.connect({ host: hostname, port: Number(port || fallbackPort) });
    socket.setTimeout(1500);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
    socket.once('timeout', () => {
      socket.destroy();
      resolve(false);
    });
  });
}

export default async function setup(project: TestProject) {
  let databaseUrl = process.env.DATABASE_URL || DEFAULT_DATABASE_URL;
  let redisUrl = process.env.REDIS_URL || DEFAULT_REDIS_URL;
  const stops: (() => Promise<unknown>)[] = [];

  const pgUp = await reachable(databaseUrl, 5432);
  const redisUp = await reachable(redisUrl, 6379);
  if (!pgUp || !redisUp) {
    try {
      const { GenericContainer, Wait } = await import('testcontainers');
      if (!pgUp) {
        const pg = await new GenericContainer('postgres:17-alpine')
          .withEnvironment({ POSTGRES_HOST_AUTH_METHOD: 'trust', POSTGRES_DB: 'test' })
          .withExposedPorts(5432)
          .withWaitStrategy(Wait.forLogMessage(/database system is ready to accept connections/, 2))
          .start();
        stops.push(() => pg.stop());
        databaseUrl = `postgres://postgres@${pg.getHost()}:${pg.getMappedPort(5432)}/test`;
      }
      if (!redisUp) {
        const redis = await new GenericContainer('redis:7-alpine').withExposedPorts(6379).start();
        stops.push(() => redis.stop());
        redisUrl = `redis://${redis.getHost()}:${redis.getMappedPort(6379)}`;
      }
    } catch (err) {
      throw new Error(
        `The tests need PostgreSQL and Redis. ${pgUp ? '' : `Nothing answers at ${databaseUrl}. `}` +
          `${redisUp ? '' : `Nothing answers at ${redisUrl}. `}` +
          'Start them (see README "Running the tests"), or set DATABASE_URL / REDIS_URL, ' +
          `or run a Docker engine for testcontainers (${(err as Error).message.split('\n')[0]}).`,
        { cause: err },
      );
    }
  }
  project.provide('databaseUrl', databaseUrl);
  project.provide('redisUrl', redisUrl);
  return async () => {
    for (const stop of stops) await stop();
  };
}
