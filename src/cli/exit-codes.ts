/**
 * The exit codes of `kasgate`, for scripts. README "Admin CLI" lists them; keep both in step.
 */
export const EXIT = {
  ok: 0,
  /** The gateway could not be reached, answered 5xx, or (serve/migrate) could not start. */
  failed: 1,
  /** Unknown command or option, a missing argument, bad configuration, or input the API rejected (400). */
  usage: 2,
  /** The agent, token or route does not exist (404). */
  notFound: 3,
  /** The admin token is missing from the request or wrong (401/403). */
  unauthorized: 4,
  /** It exists already, e.g. an agent of that name (409). */
  conflict: 5,
} as const;

export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/** An error the CLI reports as one line on stderr, then exits with its code. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: ExitCode,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

/** A mistake in how the command was called: also prints where to find its help. */
export class UsageError extends CliError {
  constructor(
    message: string,
    /** The command whose help to point at, e.g. "agents create"; empty for the top level. */
    readonly command: string,
  ) {
    super(message, EXIT.usage);
  }
}
