/**
 * Finds the PostgreSQL and Redis the suite runs against: DATABASE_URL / REDIS_URL, else the local
 * servers on their standard ports, else (where a container runtime answers, and unless
 * KASGATE_TEST_CONTAINERS=off) containers started by testcontainers. vitest.config.ts has already
 * stopped the run, with kasgate's message alone, when none of that can work.
 */
import type { TestProject } from 'vitest/node';
import { exitMissingServices, probeServices } from './services.js';

declare module 'vitest' {
  interface ProvidedContext {
    databaseUrl: string;
    redisUrl: string;
  }
}

export default async function setup(project: TestProject) {
  const services = await probeServices(process.env);
  let { databaseUrl, redisUrl } = services;
  const stops: (() => Promise<unknown>)[] = [];

  if (!services.pgUp || !services.redisUp) {
    try {
      const { GenericContainer, Wait } = await import('testcontainers');
      if (!services.pgUp) {
        const pg = await new GenericContainer('postgres:17-alpine')
          .withEnvironment({ POSTGRES_HOST_AUTH_METHOD: 'trust', POSTGRES_DB: 'test' })
          .withExposedPorts(5432)
          .withWaitStrategy(Wait.forLogMessage(/database system is ready to accept connections/, 2))
          .start();
        stops.push(() => pg.stop());
        databaseUrl = `postgres://postgres@${pg.getHost()}:${pg.getMappedPort(5432)}/test`;
      }
      if (!services.redisUp) {
        const redis = await new GenericContainer('redis:7-alpine').withExposedPorts(6379).start();
        stops.push(() => redis.stop());
        redisUrl = `redis://${redis.getHost()}:${redis.getMappedPort(6379)}`;
      }
    } catch (err) {
      for (const stop of stops) await stop().catch(() => {});
      exitMissingServices(services, (err as Error).message.split('\n')[0]!);
    }
  }
  project.provide('databaseUrl', databaseUrl);
  project.provide('redisUrl', redisUrl);
  return async () => {
    for (const stop of stops) await stop();
  };
}
