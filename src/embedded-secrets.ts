/**
 * In embedded mode with no admin token or webhook secret configured, kasgate makes both once and
 * keeps them in the data dir (mode 0600). The log says where they are, never what they are.
 * With the GitLab API configured and no KASGATE_ENCRYPTION_KEY, it keeps an encryption key there
 * too (for deploy tokens waiting for their agent), added to an older file when it lacks one: the
 * sealed tokens live in the database, the key only in this file.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { Logger } from 'pino';
import type { Config } from './config.js';
import { DataDirError } from './db/errors.js';

interface StoredSecrets {
  adminToken: string;
  webhookSecret: string;
  encryptionKey?: string;
}

export interface ResolvedSecrets {
  adminToken: string;
  webhookSecrets: string[];
  encryptionKey: Buffer | undefined;
}

export const SECRETS_FILE = 'secrets.json';

/** Where the embedded store and these secrets live when KASGATE_DATA_DIR is not set. */
export const DEFAULT_DATA_DIR = './data';

export async function resolveSecrets(config: Config, log: Logger): Promise<ResolvedSecrets> {
  const needAdmin = config.adminToken === undefined;
  const needWebhook = config.webhookSecrets.length === 0 && config.webhookSigningKeys.length === 0;
  const needKey = config.encryptionKey === undefined && config.gitlab !== undefined;
  if (!needAdmin && !needWebhook && !needKey) {
    return { adminToken: config.adminToken!, webhookSecrets: config.webhookSecrets, encryptionKey: config.encryptionKey };
  }

  const path = join(resolve(config.dataDir), SECRETS_FILE);
  let stored: StoredSecrets;
  try {
    stored = JSON.parse(await readFile(path, 'utf8')) as StoredSecrets;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new DataDirError(`KASGATE_DATA_DIR: cannot read ${path}: ${(err as Error).message}`, { cause: err });
    }
    stored = { adminToken: randomBytes(32).toString('base64url'), webhookSecret: randomBytes(32).toString('base64url') };
    await mkdir(resolve(config.dataDir), { recursive: true });
    await writeFile(path, `${JSON.stringify(stored, null, 2)}\n`, { mode: 0o600 });
    log.info({ file: path }, 'generated an admin token and a webhook secret for embedded mode');
  }
  if (needKey && stored.encryptionKey === undefined) {
    stored = { ...stored, encryptionKey: randomBytes(32).toString('base64') };
    await writeFile(path, `${JSON.stringify(stored, null, 2)}\n`, { mode: 0o600 });
    log.info({ file: path }, 'generated an encryption key for deploy tokens (KASGATE_ENCRYPTION_KEY not set)');
  }
  log.info(
    { file: path, adminTokenFrom: needAdmin ? 'file' : 'KASGATE_ADMIN_TOKEN', webhookSecretFrom: needWebhook ? 'file' : 'environment' },
    `embedded mode: the admin token and webhook secret are in ${path}`,
  );
  return {
    adminToken: config.adminToken ?? stored.adminToken,
    webhookSecrets: needWebhook ? [stored.webhookSecret] : config.webhookSecrets,
    encryptionKey: config.encryptionKey ?? (stored.encryptionKey === undefined ? undefined : Buffer.from(stored.encryptionKey, 'base64')),
  };
}
