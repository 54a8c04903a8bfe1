/** The `kasgate` command: serve | migrate | agent. */
import type { Logger } from 'pino';
import { checkServeConfig, ConfigError, loadConfig } from './config.js';
import { createLogger } from './log.js';
import { startServer } from './server.js';
import { migrate } from './db/migrate.js';
import { startEmbeddedPostgres } from './db/embedded.js';

const USAGE = `usage: kasgate <command>

  serve     run the gateway (applies pending migrations first)
  migrate   apply pending database migrations and exit
  agent     run the in-cluster agent (see docs/agent.md)

Configuration comes from the environment; see README.md.`;

/** SIGTERM must end in an exit within 10 s, whatever hangs. */
const SHUTDOWN_DEADLINE_MS = 9500;

function onSignals(log: Logger, stop: () => Promise<void>): void {
  let stopping = false;
  const handler = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'signal received');
    setTimeout(() => {
      log.error('shutdown took too long; exiting');
      process.exit(1);
    }, SHUTDOWN_DEADLINE_MS).unref();
    stop().then(
      () => process.exit(0),
      (err: Error) => {
        log.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', handler);
  process.on('SIGINT', handler);
}

export async function runCli(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const command = argv[0];
  if (command === 'agent') {
    const { runAgent, AgentConfigError } = await import('./agent/main.js');
    try {
      await runAgent(env);
      return 0;
    } catch (err) {
      if (!(err instanceof Error)) throw err;
      // A configuration mistake exits 2 like the gateway's; a revoked token exits 1 (do not restart blindly).
      process.stderr.write(`kasgate agent: ${err.message}\n`);
      return err instanceof AgentConfigError ? 2 : 1;
    }
  }
  if (command !== 'serve' && command !== 'migrate') {
    process.stderr.write(`${USAGE}\n`);
    return command === undefined || command === 'help' || command === '--help' ? 0 : 2;
  }

  let config;
  try {
    config = loadConfig(env);
    if (command === 'serve') checkServeConfig(config);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`kasgate: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  const log = createLogger(config.logLevel);

  if (command === 'migrate') {
    const embedded = config.databaseUrl === undefined ? await startEmbeddedPostgres(config.dataDir) : undefined;
    try {
      const applied = await migrate(embedded?.connection ?? { connectionString: config.databaseUrl }, config.dbSchema, log);
      log.info({ applied: applied.length }, applied.length ? 'migrations applied' : 'database is up to date');
    } finally {
      await embedded?.close();
    }
    return 0;
  }

  const server = await startServer(config, log);
  onSignals(log, () => server.shutdown());
  return new Promise<number>(() => {}); // serve until a signal
}
