/**
 * Listens on a unix socket path with a given mode: its directory is made
 * (with `dirMode`), a stale socket file is removed, and the socket is bound
 * under a umask that makes it no more open than `mode` even for the moment
 * before the chmod.
 */
import { chmodSync, mkdirSync, rmSync } from 'node:fs';
import type { Server } from 'node:net';
import { dirname } from 'node:path';

export async function listenUnix(server: Server, path: string, mode: number, dirMode: number): Promise<void> {
  mkdirSync(dirname(path), { recursive: true, mode: dirMode });
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
