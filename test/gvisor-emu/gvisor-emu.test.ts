/**
 * The gVisor emulation library itself: under LD_PRELOAD, in a fresh network
 * namespace, the checker's calls get gVisor's answers, and the calls gVisor
 * supports pass through to the kernel unchanged (compared with a run without
 * the library).
 */
import { spawnSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildGvisorEmu, type GvisorEmu } from './build.js';

let emu: GvisorEmu;
beforeAll(() => {
  emu = buildGvisorEmu();
});
afterAll(() => emu?.remove());

/** Runs the checker in a new network namespace; its "name=errno" lines as a map. */
function check(env: Record<string, string>): Record<string, number> {
  const r = spawnSync('unshare', ['-n', emu.checker], { encoding: 'utf8', env: { ...process.env, ...env }, timeout: 10_000 });
  expect(r.status).toBe(0);
  return Object.fromEntries(r.stdout.trim().split('\n').map((l) => [l.split('=')[0], Number(l.split('=')[1])]));
}

const EINVAL = 22;
const ENOTTY = 25;
const EPERM = 1;
const EEXIST = 17;

describe('gvisor_emu.so', () => {
  it("answers as gVisor: vnet header EINVAL, header ioctls and set-ioctls ENOTTY, multicast EPERM", () => {
    const r = check({ LD_PRELOAD: emu.library });
    expect(r.tunsetiff_vnet).toBe(EINVAL);
    expect(r.tunsetvnethdrsz).toBe(ENOTTY);
    expect(r.tunsetoffload).toBe(ENOTTY);
    expect(r.siocsifflags).toBe(ENOTTY);
    expect(r.siocsifmtu).toBe(ENOTTY);
    expect(r.siocsifhwaddr).toBe(ENOTTY);
    expect(r.bind_netlink_groups).toBe(EPERM);
    expect(r.netlink_add_membership).toBe(EPERM);
  });

  it('passes the rest through to the kernel', () => {
    const r = check({ LD_PRELOAD: emu.library });
    // The plain TUNSETIFF reaches the kernel and creates the tap (the vnet one never did).
    expect(r.tunsetiff_plain).toBe(0);
    for (const k of ['siocgifflags', 'siocgifmtu', 'siocgifhwaddr', 'siocgifindex', 'fionbio', 'bind_netlink_nogroups', 'so_rcvbuf'])
      expect([k, r[k]]).toEqual([k, 0]);
  });

  it('without the library the same calls succeed (the checker asks for nothing Linux refuses)', () => {
    const r = check({});
    expect(r.tunsetiff_vnet).toBe(0);
    // The fd is attached already: a second TUNSETIFF is refused by Linux itself.
    expect(r.tunsetiff_plain).toBe(EEXIST);
    for (const k of ['tunsetvnethdrsz', 'tunsetoffload', 'siocsifflags', 'siocsifmtu', 'siocsifhwaddr', 'bind_netlink_groups', 'netlink_add_membership'])
      expect([k, r[k]]).toEqual([k, 0]);
  });
});
