/**
 * Why `kasgate serve` or `kasgate migrate` could not start, in one line that names the setting
 * to change. The stack trace is for LOG_LEVEL=debug only (the CLI prints it then).
 */
import { ConfigError, type Config } from '../config.js';
import { DatabaseConnectError, DataDirError } from '../db/errors.js';
import { EXIT, type ExitCode } from './exit-codes.js';

export function describeStartError(err: unknown, config: Config | undefined): { line: string; exitCode: ExitCode } {
  if (err instanceof ConfigError) return { line: err.message, exitCode: EXIT.usage };
  if (err instanceof DataDirError) return { line: err.message, exitCode: EXIT.failed };
  if (err instanceof DatabaseConnectError) {
    const variable = config?.databaseUrl === undefined ? 'KASGATE_DATA_DIR (embedded database)' : 'DATABASE_URL';
    return { line: `${variable}: ${err.message}`, exitCode: EXIT.failed };
  }
  const listen = listenProblem(err, config);
  if (listen) return { line: listen, exitCode: EXIT.failed };
  const message = err instanceof Error ? err.message : String(err);
  return { line: `could not start: ${message.split('\n')[0]} (LOG_LEVEL=debug shows the details)`, exitCode: EXIT.failed };
}

function listenProblem(err: unknown, config: Config | undefined): string | undefined {
  const e = err as NodeJS.ErrnoException & { port?: number; address?: string };
  if (e?.syscall !== 'listen') return undefined;
  const port = e.port ?? config?.port;
  const host = e.address ?? config?.host;
  switch (e.code) {
    case 'EADDRINUSE':
      return `PORT: port ${port} on ${host} is already in use by another process; stop it or set PORT to a free port`;
    case 'EACCES':
      return `PORT: not allowed to listen on port ${port} (ports below 1024 need privileges); set PORT to 1024 or above`;
    case 'EADDRNOTAVAIL':
      return `HOST: ${host} is not an address of this machine; set HOST to one of its addresses, or 0.0.0.0`;
    default:
      return `PORT: cannot listen on ${host}:${port}: ${e.message}`;
  }
}
