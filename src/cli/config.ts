/**
 * Where the admin commands find the gateway and its admin token: `--url` or KASGATE_URL, and
 * KASGATE_ADMIN_TOKEN; on the gateway's own machine, an embedded gateway's generated token.
 * Like src/config.ts for the gateway, this is the only place the admin commands read the
 * environment.
 */
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { DEFAULT_DATA_DIR, SECRETS_FILE } from '../embedded-secrets.js';
import { CliError, EXIT } from './exit-codes.js';

export const DEFAULT_GATEWAY_URL = 'http://127.0.0.1:8080';

export interface AdminTarget {
  /** Without a trailing slash. */
  url: string;
  token: string;
}

export function adminTarget(env: NodeJS.ProcessEnv, urlOption: string | undefined): AdminTarget {
  const raw = urlOption ?? (env.KASGATE_URL?.trim() || DEFAULT_GATEWAY_URL);
  const from = urlOption === undefined ? 'KASGATE_URL' : '--url';
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new CliError(`${from}: must be an http(s) URL such as https://kasgate.example.com (got ${JSON.stringify(raw)})`, EXIT.usage);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new CliError(`${from}: must be an http(s) URL such as https://kasgate.example.com (got ${JSON.stringify(raw)})`, EXIT.usage);
  }
  return { url: url.href.replace(/\/+$/, ''), token: adminToken(env) };
}

function adminToken(env: NodeJS.ProcessEnv): string {
  const given = env.KASGATE_ADMIN_TOKEN?.trim();
  if (given) return given;
  // An embedded gateway (`make run`) generates its token into its data dir; use it when it is here.
  const file = join(resolve(env.KASGATE_DATA_DIR?.trim() || DEFAULT_DATA_DIR), SECRETS_FILE);
  try {
    const stored = JSON.parse(readFileSync(file, 'utf8')) as { adminToken?: unknown };
    if (typeof stored.adminToken === 'string' && stored.adminToken) return stored.adminToken;
  } catch {
    // No such file, or not ours: say what to set.
  }
  throw new CliError(
    'KASGATE_ADMIN_TOKEN: not set (the gateway\'s admin token; an embedded gateway keeps its own in $KASGATE_DATA_DIR/secrets.json)',
    EXIT.usage,
  );
}
