/**
 * The PostgreSQL and Redis the suite needs, and what to say when they are missing. Used twice:
 * by vitest.config.ts before vitest prints anything (so that kasgate's message comes first and
 * alone, not after vitest's misleading "No test files found"), and by global-setup.ts, which
 * starts testcontainers where a container runtime answers.
 */
import net from 'node:net';

export const DEFAULT_DATABASE_URL = 'postgres://postgres@127.0.0.1:5432/test';
export const DEFAULT_REDIS_URL = 'redis://127.0.0.1:6379';

export interface Services {
  databaseUrl: string;
  redisUrl: string;
  pgUp: boolean;
  redisUp: boolean;
}

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

export async function probeServices(env: NodeJS.ProcessEnv): Promise<Services> {
  const databaseUrl = env.DATABASE_URL || DEFAULT_DATABASE_URL;
  const redisUrl = env.REDIS_URL || DEFAULT_REDIS_URL;
  const [pgUp, redisUp] = await Promise.all([reachable(databaseUrl, 5432), reachable(redisUrl, 6379)]);
  return { databaseUrl, redisUrl, pgUp, redisUp };
}

/** Why testcontainers cannot stand in, or undefined when a container runtime answers. */
export async function containersUnavailable(env: NodeJS.ProcessEnv): Promise<string | undefined> {
  if (env.KASGATE_TEST_CONTAINERS === 'off') return 'KASGATE_TEST_CONTAINERS=off';
  try {
    const { getContainerRuntimeClient } = await import('testcontainers');
    await getContainerRuntimeClient();
    return undefined;
  } catch (err) {
    return (err as Error).message.split('\n')[0];
  }
}

export function missingServicesMessage(services: Services, why: string): string {
  return (
    '\nkasgate tests: they need PostgreSQL and Redis.\n' +
    `${services.pgUp ? '' : `  Nothing answers at ${services.databaseUrl} (DATABASE_URL).\n`}` +
    `${services.redisUp ? '' : `  Nothing answers at ${services.redisUrl} (REDIS_URL).\n`}` +
    '  Start them (README "Running the tests"), set DATABASE_URL / REDIS_URL, or run a Docker\n' +
    `  engine for testcontainers (${why}).\n\n`
  );
}

/** Ends the run with the message alone and exit code 1. */
export function exitMissingServices(services: Services, why: string): never {
  process.stderr.write(missingServicesMessage(services, why));
  process.exit(1);
}
