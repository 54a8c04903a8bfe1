/**
 * The admin API (/api/v1) as the CLI uses it: JSON in and out, the API's error message as the
 * CLI's error, and its status turned into an exit code a script can test.
 */
import type { AdminTarget } from './config.js';
import { CliError, EXIT, type ExitCode } from './exit-codes.js';

const TIMEOUT_MS = 15_000;

export class ApiError extends CliError {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message, exitCodeFor(status));
  }
}

function exitCodeFor(status: number): ExitCode {
  if (status === 401 || status === 403) return EXIT.unauthorized;
  if (status === 404) return EXIT.notFound;
  if (status === 409) return EXIT.conflict;
  if (status === 400 || status === 422) return EXIT.usage;
  return EXIT.failed;
}

export interface AdminClient {
  readonly url: string;
  request<T>(method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE', path: string, body?: unknown): Promise<T>;
}

export function createAdminClient(target: AdminTarget): AdminClient {
  return {
    url: target.url,
    async request<T>(method: string, path: string, body?: unknown): Promise<T> {
      const where = `${target.url}/api/v1${path}`;
      let response: Response;
      try {
        response = await fetch(where, {
          method,
          headers: {
            authorization: `Bearer ${target.token}`,
            accept: 'application/json',
            ...(body === undefined ? {} : { 'content-type': 'application/json' }),
          },
          body: body === undefined ? undefined : JSON.stringify(body),
          signal: AbortSignal.timeout(TIMEOUT_MS),
        });
      } catch (err) {
        throw new CliError(`cannot reach the gateway at ${target.url}: ${networkReason(err)} (is KASGATE_URL right?)`, EXIT.failed);
      }
      const text = await response.text();
      let parsed: unknown;
      try {
        parsed = text ? JSON.parse(text) : undefined;
      } catch {
        parsed = undefined;
      }
      if (response.ok) {
        if (text && parsed === undefined) {
          throw new CliError(`${target.url} answered ${method} ${path} with something that is not JSON: is it a kasgate gateway?`, EXIT.failed);
        }
        return parsed as T;
      }
      const error = (parsed as { error?: { code?: unknown; message?: unknown } } | undefined)?.error;
      if (typeof error?.message === 'string') {
        const hint = response.status === 401 ? ' (check KASGATE_ADMIN_TOKEN)' : '';
        throw new ApiError(response.status, String(error.code ?? 'error'), `${error.message}${hint}`);
      }
      throw new ApiError(response.status, 'http_error', `${target.url} answered ${method} ${path} with HTTP ${response.status}: is it a kasgate gateway?`);
    },
  };
}

function networkReason(err: unknown): string {
  if (err instanceof Error && err.name === 'TimeoutError') return `no answer within ${TIMEOUT_MS / 1000} s`;
  const cause = (err as { cause?: { code?: string; message?: string } }).cause;
  switch (cause?.code) {
    case 'ECONNREFUSED':
      return 'connection refused';
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return 'unknown host';
    case 'ECONNRESET':
      return 'connection reset';
    default:
      return cause?.message ?? (err as Error).message ?? String(err);
  }
}
