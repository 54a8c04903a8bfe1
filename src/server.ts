/** Runs the gateway: context, app, listen; and the orderly shutdown SIGTERM asks for. */
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { buildApp } from './app.js';
import { checkServeConfig, type Config } from './config.js';
import { createContext, type AppContext } from './context.js';

export interface RunningServer {
  app: FastifyInstance;
  ctx: AppContext;
  /** The address it listens on, e.g. http://127.0.0.1:8080. */
  url: string;
  /** Drain agents (1012, spread over the window), finish in-flight requests, close pools. */
  shutdown(): Promise<void>;
}

export async function startServer(config: Config, log: Logger): Promise<RunningServer> {
  checkServeConfig(config);
  const ctx = await createContext(config, log);
  let app: FastifyInstance;
  try {
    app = await buildApp(ctx);
    await app.listen({ port: config.port, host: config.host });
  } catch (err) {
    await ctx.close();
    throw err;
  }
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : config.port;
  const host = config.host === '0.0.0.0' || config.host === '::' ? '127.0.0.1' : config.host;
  log.info({ port, replicaId: config.replicaId, mode: config.databaseUrl ? 'postgres' : 'embedded' }, 'kasgate listening');

  let stopping: Promise<void> | undefined;
  return {
    app,
    ctx,
    url: `http://${host.includes(':') ? `[${host}]` : host}:${port}`,
    shutdown() {
      stopping ??= (async () => {
        log.info({ agents: ctx.hub.size }, 'shutting down: draining agent connections');
        await ctx.hub.drain(Math.min(config.drainSeconds, 5) * 1000);
        await app.close();
        await ctx.close();
        log.info('shutdown complete');
      })();
      return stopping;
    },
  };
}
