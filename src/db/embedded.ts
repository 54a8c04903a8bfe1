/**
 * The embedded default: PGlite (Postgres compiled to WASM) on disk, served over a loopback
 * socket so the very same `pg` code, migrations and queries run against it.
 */
import { mkdir, open, readFile, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { PGLiteSocketServer } from '@electric-sql/pglite-socket';
import type pg from 'pg';
import { DataDirError } from './errors.js';

export interface EmbeddedPostgres {
  connection: pg.ClientConfig;
  close(): Promise<void>;
}

/** PGlite runs one query at a time; a few sockets let the pool and the migrator coexist. */
const MAX_SOCKETS = 8;

export async function startEmbeddedPostgres(dataDir: string): Promise<EmbeddedPostgres> {
  const dir = resolve(dataDir);
  await mkdir(dir, { recursive: true }).catch((err: NodeJS.ErrnoException) => {
    throw new DataDirError(`KASGATE_DATA_DIR: cannot create ${dir}: ${err.code === 'EACCES' || err.code === 'EROFS' ? 'not writable' : err.message}`, { cause: err });
  });
  const releaseLock = await lockDataDir(dir);
  try {
    const db = await PGlite.create(join(dir, 'pgdata'));
    const server = new PGLiteSocketServer({ db, host: '127.0.0.1', port: 0, maxConnections: MAX_SOCKETS });
    await server.start();
    const [host, port] = server.getServerConn().split(':');
    return {
      connection: { host, port: Number(port), user: 'postgres', database: 'postgres' },
      async close() {
        await server.stop();
        await db.close();
        await releaseLock();
      },
    };
  } catch (err) {
    await releaseLock();
    throw err;
  }
}

/** Two processes writing one PGlite directory would corrupt it: refuse the second. */
async function lockDataDir(dir: string): Promise<() => Promise<void>> {
  const lockPath = join(dir, 'kasgate.pid');
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const handle = await open(lockPath, 'wx');
      await handle.writeFile(String(process.pid));
      await handle.close();
      return () => rm(lockPath, { force: true });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EACCES' || code === 'EROFS') throw new DataDirError(`KASGATE_DATA_DIR: ${dir} is not writable`, { cause: err });
      if (code !== 'EEXIST') throw err;
      const owner = Number((await readFile(lockPath, 'utf8').catch(() => '')).trim());
      if (owner && owner !== process.pid && isAlive(owner)) {
        throw new DataDirError(`KASGATE_DATA_DIR: ${dir} is in use by another kasgate process (pid ${owner}); stop it, or give this one another directory`, { cause: err });
      }
      await rm(lockPath, { force: true }); // stale lock from a process that died
    }
  }
  throw new DataDirError(`KASGATE_DATA_DIR: could not take the lock ${lockPath}`);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
