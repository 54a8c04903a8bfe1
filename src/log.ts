import { pino, type Logger } from 'pino';

/** Paths that could ever carry a secret; pino replaces them before anything is written. */
const REDACT = [
  'req.headers.authorization',
  'req.headers["x-gitlab-token"]',
  'req.headers["webhook-signature"]',
  'headers.authorization',
  'headers["x-gitlab-token"]',
  'headers["private-token"]',
  '*.headers["private-token"]',
  '*.headers.authorization',
  'config.gitlab.token',
  '*.gitlab.token',
  'gitlab.token',
  '*.token',
  '*.adminToken',
  '*.webhookSecret',
  '*.webhookSecrets',
  '*.webhookSigningKeys',
  'token',
  'adminToken',
  // Deploy tokens for Flux (src/credentials): never logged on purpose; these catch a slip.
  'password',
  '*.password',
  'frame.password',
  '*.sealed_token',
  'sealed_token',
];

export function createLogger(level: string, destination?: pino.DestinationStream): Logger {
  const options = {
    level,
    base: { service: 'kasgate' },
    redact: { paths: REDACT, censor: '[redacted]' },
    timestamp: pino.stdTimeFunctions.isoTime,
  };
  return destination ? pino(options, destination) : pino(options);
}
