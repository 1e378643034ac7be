/**
 * Listens on a unix socket path with a given mode: its directory is made
 * (with `dirMode`), a stale socket file is removed, and the socket is bound
 * under a umask that makes it no more open than `mode` even for the moment
 * before the chmod.
 */
import { chmodSync, mkdirSync, rmSync, statSync } from 'node:fs';
import type { Server } from 'node:net';
import { dirname } from 'node:path';
import { UsernetError } from '../errors.js';

/**
 * `mkdir -p` one level at a time. Node 20's mkdirSync({ recursive: true })
 * never returns for a path where mkdir fails with ENOENT although the parent
 * exists (a directory under /proc): here that is an error that names the path.
 */
export function makeDirs(dir: string, mode: number): void {
  try {
    if (statSync(dir).isDirectory()) return;
    throw new UsernetError('EEXIST', `cannot create the directory ${dir}: EEXIST: a file of that name exists and is not a directory`);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const parent = dirname(dir);
  if (parent !== dir) makeDirs(parent, mode);
  try {
    mkdirSync(dir, { mode });
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'EEXIST') return;
    throw new UsernetError(e.code ?? 'ERR_MKDIR', `cannot create the directory ${dir}: ${e.message}`);
  }
}

export async function listenUnix(server: Server, path: string, mode: number, dirMode: number): Promise<void> {
  makeDirs(dirname(path), dirMode);
  rmSync(path, { force: true });
  const umask = process.umask(0o777 & ~mode);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } finally {
    process.umask(umask);
  }
  chmodSync(path, mode);
}
