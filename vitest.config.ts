import { defineConfig } from 'vitest/config';
import { containersUnavailable, exitMissingServices, probeServices } from './test/support/services.js';

export default defineConfig(async () => {
  // Before vitest prints anything: without PostgreSQL and Redis (and no way to start them), say so alone.
  const services = await probeServices(process.env);
  if (!services.pgUp || !services.redisUp) {
    const why = await containersUnavailable(process.env);
    if (why !== undefined) exitMissingServices(services, why);
  }
  return {
    test: {
      include: ['test/**/*.test.ts'],
      globalSetup: ['test/support/global-setup.ts'],
      pool: 'forks',
      testTimeout: 30_000,
      hookTimeout: 60_000,
      teardownTimeout: 30_000,
    },
  };
});
