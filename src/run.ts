/**
 * `usernet run -- CMD`: a new network namespace (plus a user namespace when
 * not root) with a configured tap, usernet's bridge and gateway behind it,
 * and CMD running inside with inherited stdio. usernet exits with CMD's
 * status; the namespace and its tap vanish when CMD and usernet are gone,
 * because only usernet holds a reference to them (an fd).
 *
 * CMD is started through nsenter(1) pointed at /proc/<our pid>/fd/<ns fd>:
 * Node cannot enter a namespace itself before exec, and util-linux is on every
 * Linux system that has ip(8).
 */
import { spawn } from 'node:child_process';
import { constants as osConstants } from 'node:os';
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import type { Logger } from './log.js';
import type { RunCommand } from './options.js';
import { Runtime } from './runtime.js';
import { native } from './native/addon.js';
import { TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6, TUN_F_USO4, TUN_F_USO6 } from './native/types.js';
import { formatIpv4 } from '../stack/wire/ipv4-address.js';
import { macToBytes } from '../stack/wire/mac.js';
import { UsernetError } from './errors.js';

export const OFFLOADS = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_USO4 | TUN_F_USO6;

/** Guest address offset within the network, as in slirp: N+100. */
const GUEST_HOST = 100;
const GATEWAY_HOST = 2;

export async function runInNamespace(cmd: RunCommand, log: Logger): Promise<number> {
  const o = cmd.options;
  const nsenter = findInPath('nsenter');
  if (nsenter === null) {
    throw new UsernetError('ERR_NO_NSENTER', 'nsenter(1) not found in PATH: install util-linux');
  }
  const uid = process.getuid?.() ?? 0;
  const gid = process.getgid?.() ?? 0;
  const asRoot = uid === 0;
  const guest = formatIpv4((o.network + GUEST_HOST) >>> 0);
  const gateway = formatIpv4((o.network + GATEWAY_HOST) >>> 0);
  const ns = native.openTapInNamespace({
    target: { create: true, ...(asRoot ? {} : { createUserns: { uid, gid } }) },
    tap: { name: cmd.tapName, vnetHdr: o.offload, offloads: o.offload ? OFFLOADS : 0 },
    configure: {
      name: cmd.tapName,
      loopbackUp: true,
      mtu: o.mtu,
      ...(cmd.guestMac >= 0 ? { mac: macToBytes(cmd.guestMac) } : {}),
      ipv4: guest,
      prefixLength: o.prefix,
      up: true,
      defaultGateway: gateway,
    },
  });
  log.debug(`namespace ready: ${cmd.tapName} ${guest}/${o.prefix} via ${gateway}`);

  const runtime = new Runtime(o, log);
  let exitStatus = 1;
  try {
    runtime.addTap(ns);
    await runtime.startForwards();
    const nsArgs = [`--net=/proc/${process.pid}/fd/${ns.netnsFd}`];
    if (ns.usernsFd >= 0) nsArgs.unshift(`--user=/proc/${process.pid}/fd/${ns.usernsFd}`);
    const dump = () => runtime.logStats();
    process.on('SIGUSR1', dump);
    try {
      exitStatus = await runChild(nsenter, [...nsArgs, '--', ...cmd.argv], log);
    } finally {
      process.off('SIGUSR1', dump);
    }
  } finally {
    runtime.close();
    native.closeFd(ns.netnsFd);
    if (ns.usernsFd >= 0) native.closeFd(ns.usernsFd);
  }
  return exitStatus;
}

/** Runs the child with our stdio; resolves to its exit status (128+signal when killed, like a shell). */
function runChild(file: string, args: string[], log: Logger): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio: 'inherit' });
    // A terminal sends SIGINT to the whole foreground group, CMD included: forwarding it would
    // deliver it twice. Other signals are meant for us and CMD alike.
    const forward = (sig: NodeJS.Signals) => {
      if (sig === 'SIGINT' && process.stdin.isTTY) return;
      child.kill(sig);
    };
    const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT'];
    for (const s of signals) process.on(s, forward);
    const done = () => {
      for (const s of signals) process.off(s, forward);
    };
    child.on('error', (err) => {
      done();
      reject(err);
    });
    child.on('exit', (code, signal) => {
      done();
      if (signal !== null) {
        log.debug(`command killed by ${signal}`);
        resolve(128 + (osConstants.signals[signal] ?? 0));
      } else {
        resolve(code ?? 1);
      }
    });
  });
}

function findInPath(name: string): string | null {
  const dirs = (process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin').split(delimiter);
  for (const d of [...dirs, '/usr/bin', '/bin', '/usr/sbin', '/sbin']) {
    const p = join(d, name);
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      // not here
    }
  }
  return null;
}
