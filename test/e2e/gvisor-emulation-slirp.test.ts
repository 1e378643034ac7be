/**
 * rootlesskit and podman on the slirp4netns front end under the gVisor
 * emulation (test/gvisor-emu): the same checks as rootlesskit.test.ts and
 * podman.test.ts (slirp-checks.ts), with a wrapper as the slirp4netns
 * binary that runs bin/slirp4netns under LD_PRELOAD and logs at info to a
 * file. Only usernet's process is emulated: rootlesskit configures tap0
 * itself with `ip` (so the front end only opens it, without a virtio-net
 * header), podman passes --configure (so the front end configures it by
 * rtnetlink). Traffic goes to loopback servers the checks start; everything
 * is named i13r-* and removed after each test (the wrapper's directory after
 * the file), also on failure.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { buildGvisorEmu, type GvisorEmu } from '../gvisor-emu/build.js';
import { run, Sandbox } from './harness.js';
import {
  podmanForward,
  podmanTraffic,
  rootlesskitForward,
  rootlesskitTraffic,
  slirpWrapper,
  startTrafficPeers,
  type SlirpWrapper,
  type TrafficPeers,
} from './slirp-checks.js';
import { busyboxRootfs, ensureRootlessUser, openTunForUsers, restoreTunMode } from './slirp-harness.js';

const sandbox = new Sandbox('i13r');
const containers: string[] = [];
let emu: GvisorEmu | undefined;
/** Readable by the rootless user: wrappers, their logs and libraries, scripts, the busybox root. */
let dir = '';
let rootfs = '';
let tunMode = 0o666;
let peers: TrafficPeers | undefined;

beforeAll(() => {
  for (const tool of ['rootlesskit', 'podman']) {
    if (run('which', [tool]).status !== 0) throw new Error(`${tool} is not installed: apt-get install rootlesskit uidmap podman runc`);
  }
  ensureRootlessUser();
  tunMode = openTunForUsers();
  dir = mkdtempSync(join(tmpdir(), 'i13r-'));
  chmodSync(dir, 0o755);
  rootfs = busyboxRootfs(join(dir, 'rootfs'));
  emu = buildGvisorEmu();
}, 120_000);
afterEach(async () => {
  await peers?.close();
  peers = undefined;
  await sandbox.cleanup();
  for (const c of containers.splice(0)) run('podman', ['rm', '-f', '-t', '0', c]);
});
afterAll(() => {
  restoreTunMode(tunMode);
  if (dir !== '') rmSync(dir, { recursive: true, force: true });
  emu?.remove();
});

function container(): string {
  const n = `i13r-${randomBytes(3).toString('hex')}`;
  containers.push(n);
  return n;
}

async function startPeers(): Promise<TrafficPeers> {
  peers = await startTrafficPeers(sandbox, 'i13r');
  return peers;
}

/** The front end under the emulation; with resolvConf (podman runs it as root), bound over /etc/resolv.conf for it. */
function emulated(resolvConf?: string): SlirpWrapper {
  return slirpWrapper(dir, { preload: emu!.library, ...(resolvConf !== undefined ? { resolvConf } : {}) });
}

/** Opened without the virtio-net header; nothing configured by the front end (rootlesskit does that with ip). */
const PLAIN_TAP_UNCONFIGURED = /tap tap0: (created|attached), vnet header off \(EINVAL\)\n/;
/** Opened without the virtio-net header and configured (--configure) by rtnetlink only. */
const PLAIN_TAP_BY_RTNETLINK = /tap tap0: (created|attached), vnet header off \(EINVAL\), configured via rtnetlink\n/;

describe('rootlesskit --net=slirp4netns with usernet under gVisor emulation', () => {
  it('plain tap: carries TCP both ways (sha256), UDP, DNS through the forwarder and ICMP', async () => {
    const p = await startPeers();
    const w = emulated();
    await rootlesskitTraffic(w.path, dir, p);
    expect(w.log()).toMatch(PLAIN_TAP_UNCONFIGURED);
  });

  it('plain tap: --port-driver=slirp4netns -p reaches a server inside', async () => {
    const w = emulated();
    await rootlesskitForward(sandbox, w.path, dir);
    expect(w.log()).toMatch(PLAIN_TAP_UNCONFIGURED);
  });
});

describe('podman --network slirp4netns with usernet under gVisor emulation', () => {
  it('plain tap configured by rtnetlink: carries TCP both ways (sha256), UDP, DNS through the forwarder, ICMP and IPv6', async () => {
    const p = await startPeers();
    const w = emulated(p.resolvConf);
    await podmanTraffic(w.path, rootfs, container(), p);
    expect(w.log()).toMatch(PLAIN_TAP_BY_RTNETLINK);
  });

  it('plain tap configured by rtnetlink: port_handler=slirp4netns -p reaches a server in the container', async () => {
    const w = emulated();
    await podmanForward(sandbox, w.path, rootfs, container());
    expect(w.log()).toMatch(PLAIN_TAP_BY_RTNETLINK);
  });
});
