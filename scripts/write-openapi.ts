/**
 * `npm run openapi`: writes openapi/openapi.json from the routes' zod schemas. It builds the real
 * app on a throwaway embedded store, so it needs no set-up. A test fails when the committed copy drifts.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildApp } from '../src/app.js';
import { loadConfig } from '../src/config.js';
import { createContext } from '../src/context.js';
import { createLogger } from '../src/log.js';

const OPENAPI_PATH = new URL('../openapi/openapi.json', import.meta.url);

const dataDir = await mkdtemp(join(tmpdir(), 'kasgate-openapi-'));
const log = createLogger('error');
const ctx = await createContext(loadConfig({ KASGATE_DATA_DIR: dataDir, KASGATE_ADMIN_TOKEN: 'x'.repeat(32), KASGATE_WEBHOOK_SECRETS: 'x' }), log);
try {
  const app = await buildApp(ctx);
  await app.ready();
  await writeFile(OPENAPI_PATH, `${JSON.stringify(app.swagger(), null, 2)}\n`);
  await app.close();
  process.stdout.write(`wrote ${OPENAPI_PATH.pathname}\n`);
} finally {
  await ctx.close();
  await rm(dataDir, { recursive: true, force: true });
}
