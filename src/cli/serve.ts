/**
 * `kasgate serve` and `kasgate migrate`: the gateway's own processes. Loaded only when one of
 * them runs, so that the admin commands and every `--help` start fast and touch nothing.
 */
import type { Logger } from 'pino';
import { checkServeConfig, loadConfig, type Config } from '../config.js';
import { createLogger } from '../log.js';
import { startServer } from '../server.js';
import { migrate } from '../db/migrate.js';
import { startEmbeddedPostgres } from '../db/embedded.js';
import { CliError } from './exit-codes.js';
import { describeStartError } from './start-errors.js';

/** SIGTERM must end in an exit within 10 s, whatever hangs (deploy/gateway/base sizes its grace period on it). */
export const SHUTDOWN_DEADLINE_MS = 9500;

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

/** Turns whatever stopped the start into one line naming the setting (the cause stays attached, for LOG_LEVEL=debug). */
async function starting<T>(config: Config | undefined, step: () => Promise<T>): Promise<T> {
  try {
    return await step();
  } catch (err) {
    const { line, exitCode } = describeStartError(err, config);
    throw new CliError(line, exitCode, { cause: err });
  }
}

export async function serve(env: NodeJS.ProcessEnv): Promise<number> {
  const config = await starting(undefined, async () => {
    const loaded = loadConfig(env);
    checkServeConfig(loaded);
    return loaded;
  });
  const log = createLogger(config.logLevel);
  const server = await starting(config, () => startServer(config, log));
  onSignals(log, () => server.shutdown());
  return new Promise<number>(() => {}); // serve until a signal
}

export async function migrateOnly(env: NodeJS.ProcessEnv): Promise<number> {
  const config = await starting(undefined, async () => loadConfig(env));
  const log = createLogger(config.logLevel);
  await starting(config, async () => {
    const embedded = config.databaseUrl === undefined ? await startEmbeddedPostgres(config.dataDir) : undefined;
    try {
      const applied = await migrate(embedded?.connection ?? { connectionString: config.databaseUrl }, config.dbSchema, log);
      log.info({ applied: applied.length }, applied.length ? 'migrations applied' : 'database is up to date');
    } finally {
      await embedded?.close();
    }
  });
  return 0;
}
