/**
 * --enable-sandbox for an ordinary user: joining the target's user namespace
 * for the whole process, as slirp4netns does, when this one lacks
 * CAP_SYS_ADMIN (rootlesskit runs slirp4netns as the unprivileged user).
 *
 * How it works: setns(CLONE_NEWUSER) is refused to a multithreaded process,
 * and Node always is one. So the front end execve's, in place, nsenter(1)
 * (single-threaded), which joins the user namespace and execve's node again
 * with the same arguments and REEXEC_ENV set. The PID never changes (the
 * parent that spawned us and signals us keeps tracking the right process),
 * and stdio and the inherited ready and exit fds stay open (the addon clears
 * the FD_CLOEXEC that Node put on inherited fds at start-up). Inside, this user is uid 0 of the
 * namespace, so the new image starts with every capability there; only the
 * user namespace changes, so host sockets stay in the host's network
 * namespace and files we create are still owned by the same host uid.
 *
 * The re-exec happens at most once: the new image sees REEXEC_ENV, removes it
 * (nothing we spawn inherits it), and refuses if it still lacks CAP_SYS_ADMIN
 * rather than looping. Without a user namespace to join (path mode without
 * --userns-path) the front end refuses before touching anything.
 */
import { readFileSync, statSync } from 'node:fs';
import { UsernetError } from '../errors.js';
import { findInPath } from '../find-in-path.js';
import { native } from '../native/addon.js';
import type { SlirpOptions } from './options.js';

/** Set in the re-executed image's environment (and removed there at once). */
export const REEXEC_ENV = 'USERNET_SLIRP4NETNS_USERNS_JOINED';
/** linux/capability.h */
const CAP_SYS_ADMIN = 21n;

/** The user namespace slirp4netns would join: --userns-path, else /proc/PID/ns/user in PID mode. */
export function targetUsernsPath(o: SlirpOptions): string | null {
  if (o.usernsPath !== null) return o.usernsPath;
  return o.netnsType === 'pid' ? `/proc/${o.pid}/ns/user` : null;
}

/** Whether the CapEff line of a /proc/.../status text has CAP_SYS_ADMIN; false when absent or malformed. */
export function statusHasCapSysAdmin(status: string): boolean {
  const m = /^CapEff:\s*([0-9a-fA-F]{1,16})\s*$/m.exec(status);
  if (m === null) return false;
  return ((BigInt(`0x${m[1]}`) >> CAP_SYS_ADMIN) & 1n) === 1n;
}

export type UsernsDecision =
  /** Nothing to do: no sandbox asked for, or the capability is already there. */
  | { kind: 'stay' }
  | { kind: 'reexec'; userns: string }
  /** The message to print before exiting 1 (it starts with "enable-sandbox: "). */
  | { kind: 'refuse'; message: string };

/** What decideUserns needs to know about this process and the target. */
export interface UsernsFacts {
  capSysAdmin: boolean;
  /** This image is the re-executed one (REEXEC_ENV was set). */
  joined: boolean;
  /** The target user namespace: 'same' as ours, 'other', or why it cannot be looked at. */
  target: 'same' | 'other' | { error: string };
}

export function decideUserns(o: SlirpOptions, f: UsernsFacts): UsernsDecision {
  if (!o.enableSandbox || f.capSysAdmin) return { kind: 'stay' };
  const userns = targetUsernsPath(o);
  const why = 'needs CAP_SYS_ADMIN for a mount namespace';
  if (f.joined)
    return {
      kind: 'refuse',
      message: `enable-sandbox: ${why}, and has none even after joining ${userns ?? 'the target user namespace'} (this user must be mapped to uid 0 there)`,
    };
  if (userns === null)
    return { kind: 'refuse', message: `enable-sandbox: ${why}: run as root, inside a user namespace, or name the target's with --userns-path` };
  if (f.target === 'same') return { kind: 'refuse', message: `enable-sandbox: ${why}, and this process is already in ${userns} without it` };
  if (f.target !== 'other') return { kind: 'refuse', message: `enable-sandbox: ${why}, and ${userns} cannot be joined (${f.target.error})` };
  return { kind: 'reexec', userns };
}

/** Gathers the facts about this process for decideUserns; consumes REEXEC_ENV. */
export function usernsFacts(o: SlirpOptions): UsernsFacts {
  const joined = process.env[REEXEC_ENV] !== undefined;
  delete process.env[REEXEC_ENV];
  let capSysAdmin: boolean;
  try {
    capSysAdmin = statusHasCapSysAdmin(readFileSync('/proc/self/status', 'utf8'));
  } catch {
    // Without /proc we cannot tell; the sandbox itself will then fail with its own error.
    capSysAdmin = true;
  }
  const userns = targetUsernsPath(o);
  let target: UsernsFacts['target'] = { error: 'no target user namespace' };
  if (userns !== null && o.enableSandbox && !capSysAdmin) {
    try {
      const a = statSync(userns);
      const b = statSync('/proc/self/ns/user');
      target = a.dev === b.dev && a.ino === b.ino ? 'same' : 'other';
    } catch (err) {
      target = { error: (err as Error).message };
    }
  }
  return { capSysAdmin, joined, target };
}

/** The nsenter command line that re-runs this very process inside `userns`. */
export function reexecCommand(nsenter: string, userns: string): string[] {
  // --preserve-credentials: keep our ids (the namespace maps this user to 0); without it nsenter
  // would also call setgroups, which a namespace with setgroups denied refuses.
  return [nsenter, `--user=${userns}`, '--preserve-credentials', '--', process.execPath, ...process.execArgv, ...process.argv.slice(1)];
}

/**
 * Replaces this process; returns only by throwing (nsenter missing, or the
 * execve failed). keepFds: the ready and exit fds (negative: none), kept open
 * across the exec (stdio always is).
 */
export function reexecInUserns(userns: string, keepFds: number[]): never {
  const nsenter = findInPath('nsenter');
  if (nsenter === null)
    throw new UsernetError('ERR_NO_NSENTER', `enable-sandbox: needs CAP_SYS_ADMIN; joining ${userns} takes nsenter(1) (util-linux), not found in PATH`);
  const env = Object.entries(process.env)
    .filter((e): e is [string, string] => e[1] !== undefined)
    .map(([k, v]) => `${k}=${v}`);
  env.push(`${REEXEC_ENV}=1`);
  try {
    return native.execve(nsenter, reexecCommand(nsenter, userns), env, keepFds.filter((fd) => fd >= 0));
  } catch (err) {
    throw new UsernetError('ERR_SANDBOX_REEXEC', `enable-sandbox: re-executing inside ${userns}: ${(err as Error).message}`, { cause: err });
  }
}
