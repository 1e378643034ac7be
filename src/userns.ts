/**
 * User namespaces for an ordinary user's `usernet run`.
 *
 * An unprivileged process may write a user namespace's maps itself only for
 * its own uid and gid (one id each, and setgroups must be denied first). The
 * subordinate ids that /etc/subuid and /etc/subgid grant a user can only be
 * mapped by the setuid helpers newuidmap(1) and newgidmap(1), run from outside
 * on a process already inside the new namespace. So, when the user has
 * entries and the helpers exist, a holder process unshares a user and a
 * network namespace, the helpers map 0 -> the user and 1..N -> the
 * subordinate range, and usernet keeps fds of both namespaces; the holder is
 * then ended. Otherwise the namespace gets the single-id map (the user is
 * root inside and owns nothing else), as `unshare -r` does.
 */
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, openSync, readFileSync, readlinkSync } from 'node:fs';
import { userInfo } from 'node:os';
import { findInPath } from './find-in-path.js';
import type { Logger } from './log.js';
import { UsernetError } from './errors.js';

export interface IdRange {
  start: number;
  count: number;
}

/** The first range of /etc/subuid or /etc/subgid text that names the user (by name or number). */
export function subordinateRange(text: string, name: string | null, id: number): IdRange | null {
  for (const line of text.split('\n')) {
    const f = line.trim().split(':');
    if (f.length !== 3 || (f[0] !== name && f[0] !== String(id))) continue;
    const start = Number(f[1]);
    const count = Number(f[2]);
    if (!Number.isSafeInteger(start) || !Number.isSafeInteger(count) || start < 0 || count < 1) continue;
    return { start, count };
  }
  return null;
}

function readRange(path: string, name: string | null, id: number): IdRange | null {
  try {
    return subordinateRange(readFileSync(path, 'utf8'), name, id);
  } catch {
    return null;
  }
}

export interface MappedNamespaces {
  /** fds of the new user and network namespaces (O_CLOEXEC; the caller closes them). */
  usernsFd: number;
  netnsFd: number;
  uidRange: IdRange;
  gidRange: IdRange;
}

/** How long the holder may take to unshare; it is a fork and exec of unshare(1). */
const HOLDER_START_MS = 5_000;
const HOLDER_POLL_MS = 5;

/**
 * New user and network namespaces with the user's subordinate ids mapped, or
 * null when the user has no /etc/subuid and /etc/subgid entries or the
 * helpers are missing (the caller then maps the single id). Throws when the
 * helpers refuse: entries that exist but do not work are the operator's to fix.
 */
export async function namespacesWithSubordinateIds(log: Logger): Promise<MappedNamespaces | null> {
  const uid = process.getuid?.() ?? 0;
  const gid = process.getgid?.() ?? 0;
  let name: string | null = null;
  try {
    name = userInfo().username;
  } catch {
    // No passwd entry: the files can still name the uid.
  }
  // Both files name the user (or its uid), not a group.
  const uidRange = readRange('/etc/subuid', name, uid);
  const gidRange = readRange('/etc/subgid', name, uid);
  if (uidRange === null || gidRange === null) {
    log.debug('no /etc/subuid and /etc/subgid entries for this user: mapping the user alone');
    return null;
  }
  const newuidmap = findInPath('newuidmap');
  const newgidmap = findInPath('newgidmap');
  const unshare = findInPath('unshare');
  if (newuidmap === null || newgidmap === null || unshare === null) {
    log.warn('/etc/subuid has entries for this user but newuidmap/newgidmap (package uidmap) are missing: mapping the user alone');
    return null;
  }
  const holder = spawn(unshare, ['--user', '--net', '--', 'sleep', '600'], { stdio: 'ignore' });
  const exited = new Promise<void>((resolve) => holder.once('exit', () => resolve()));
  holder.on('error', () => {});
  try {
    const pid = await holderPid(holder.pid, () => holder.exitCode !== null || holder.signalCode !== null);
    const maps: [string, number, IdRange][] = [
      [newuidmap, uid, uidRange],
      [newgidmap, gid, gidRange],
    ];
    for (const [tool, own, range] of maps) {
      const r = spawnSync(tool, [String(pid), '0', String(own), '1', '1', String(range.start), String(range.count)], {
        encoding: 'utf8',
        timeout: HOLDER_START_MS,
      });
      if (r.status !== 0) {
        throw new UsernetError(
          'ERR_USERNS_MAP',
          `${tool} ${pid} 0 ${own} 1 1 ${range.start} ${range.count} failed: ${(r.stderr || r.error?.message || `status ${r.status}`).trim()}` +
            ' (check the entries in /etc/subuid and /etc/subgid, and that the helper is setuid root)',
        );
      }
    }
    const usernsFd = openSync(`/proc/${pid}/ns/user`, 'r');
    let netnsFd: number;
    try {
      netnsFd = openSync(`/proc/${pid}/ns/net`, 'r');
    } catch (err) {
      closeSync(usernsFd);
      throw err;
    }
    log.debug(`user namespace: 0 -> ${uid}, 1..${uidRange.count} -> ${uidRange.start}.. (gids 1.. -> ${gidRange.start}..)`);
    return { usernsFd, netnsFd, uidRange, gidRange };
  } finally {
    holder.kill('SIGKILL');
    await exited;
  }
}

/** Waits until the holder has left our user namespace; returns its pid. */
async function holderPid(pid: number | undefined, gone: () => boolean): Promise<number> {
  if (pid === undefined) throw new UsernetError('ERR_USERNS_HOLDER', 'could not start unshare(1) for the user namespace');
  const ours = readlinkSync('/proc/self/ns/user');
  const deadline = Date.now() + HOLDER_START_MS;
  for (;;) {
    if (gone()) throw new UsernetError('ERR_USERNS_HOLDER', 'unshare --user --net exited before the namespace could be mapped (are user namespaces allowed here?)');
    try {
      if (readlinkSync(`/proc/${pid}/ns/user`) !== ours) return pid;
    } catch {
      // exec in progress
    }
    if (Date.now() > deadline) throw new UsernetError('ERR_USERNS_HOLDER', `unshare --user --net did not start within ${HOLDER_START_MS / 1000} s`);
    await new Promise((r) => setTimeout(r, HOLDER_POLL_MS));
  }
}
