// The rtnetlink fallback of interface configuration and the vnet header
// fallback of tap_open, under the gVisor emulation (test/gvisor-emu): a child
// Node process runs the addon with LD_PRELOAD inside a fresh namespace (this
// test process stays as it is), and prints what it got; `ip` in this process
// checks what the kernel has. Every namespace is removed in afterAll.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { buildGvisorEmu, type GvisorEmu } from '../gvisor-emu/build.js';

const namespaces: string[] = [];
let emu: GvisorEmu;
const ADDON = fileURLToPath(new URL('../../src/native/addon.ts', import.meta.url));
const TSX = fileURLToPath(new URL('../../node_modules/.bin/tsx', import.meta.url));

beforeAll(() => {
  emu = buildGvisorEmu();
});

afterAll(() => {
  for (const ns of namespaces) {
    try {
      execFileSync('ip', ['netns', 'del', ns]);
    } catch {
      // already gone
    }
  }
  emu?.remove();
});

function hex(n: number): string {
  return randomBytes(n).toString('hex');
}

function newNetns(): string {
  const name = `i13n-${hex(4)}`;
  execFileSync('ip', ['netns', 'add', name]);
  namespaces.push(name);
  return name;
}

function ipJson(ns: string, args: string[]): any[] {
  return JSON.parse(execFileSync('ip', ['-j', '-n', ns, ...args], { encoding: 'utf8' }));
}

/**
 * Runs `body` (TypeScript with `native` and `ip(...args)` in scope; it sets `out`)
 * in a child Node inside `ns` under the emulation; returns `out`.
 */
function underGvisor(ns: string, body: string, netlink: 'new' | 'old' = 'new'): any {
  const script = join(emu.dir, `case-${hex(4)}.ts`);
  writeFileSync(
    script,
    `import { execFileSync } from 'node:child_process';
import { native } from ${JSON.stringify(ADDON)};
// ip(8) as the host sees it: without the emulation.
const ip = (...args: string[]) => execFileSync('env', ['-u', 'LD_PRELOAD', 'ip', ...args], { encoding: 'utf8' });
const err = (f: () => unknown) => { try { f(); return null; } catch (e: any) { return { name: e.constructor.name, code: e.code, syscall: e.syscall, message: e.message, hint: e.hint, report: e.report }; } };
let out: any = null;
${body}
console.log(JSON.stringify(out));
`,
  );
  const env = { ...process.env, LD_PRELOAD: emu.library, GVISOR_EMU_NETLINK: netlink };
  const text = execFileSync('ip', ['netns', 'exec', ns, TSX, script], { encoding: 'utf8', env });
  return JSON.parse(text.trim().split('\n').pop()!);
}

const FULL = {
  loopbackUp: true,
  mtu: 1400,
  mac: [0x02, 0x13, 0x00, 0x00, 0x00, 0x01],
  ipv4: '10.77.9.2',
  prefixLength: 24,
  txQueueLen: 500,
  up: true,
  defaultGateway: '10.77.9.1',
  ipv6: 'fd77::2',
  prefixLength6: 64,
  defaultGateway6: 'fd77::1',
};

function cfg(name: string, extra: object = FULL): string {
  const o = { name, ...extra };
  return JSON.stringify(o).replace(/"mac":(\[[^\]]*\])/, '"mac":Uint8Array.from($1)');
}

function expectConfigured(ns: string, name: string): void {
  const [link] = ipJson(ns, ['link', 'show', 'dev', name]);
  expect(link.mtu).toBe(1400);
  expect(link.address).toBe('02:13:00:00:00:01');
  expect(link.flags).toContain('UP');
  expect(link.txqlen).toBe(500);
  const [addr] = ipJson(ns, ['addr', 'show', 'dev', name]);
  expect(addr.addr_info).toContainEqual(expect.objectContaining({ family: 'inet', local: '10.77.9.2', prefixlen: 24, broadcast: '10.77.9.255' }));
  expect(addr.addr_info).toContainEqual(expect.objectContaining({ family: 'inet6', local: 'fd77::2', prefixlen: 64 }));
  expect(ipJson(ns, ['route', 'show', 'default'])).toEqual([expect.objectContaining({ gateway: '10.77.9.1', dev: name })]);
  expect(ipJson(ns, ['-6', 'route', 'show', 'default'])).toEqual([expect.objectContaining({ gateway: 'fd77::1', dev: name })]);
  expect(ipJson(ns, ['link', 'show', 'dev', 'lo'])[0].flags).toContain('UP');
}

const BY_RTNETLINK = { way: 'rtnetlink', ioctlError: 'ENOTTY', rtnetlinkError: null };

describe('under gVisor emulation (rtnetlink takes link and route requests)', () => {
  it('openTap falls back to a plain tap and reports why; configureInterface goes by rtnetlink for every setting', () => {
    const ns = newNetns();
    const name = `i13n-${hex(3)}`;
    const out = underGvisor(
      ns,
      `const h = native.openTap({ name: '${name}', vnetHdr: true, offloads: 0x07 });
const report = native.configureInterface(${cfg(name)});
out = { h, report };`,
    );
    expect(out.h).toMatchObject({ name, attached: false, vnetHdr: false, offloads: 0 });
    expect(out.h.vnetFallback).toEqual({ code: 'EINVAL', errno: -22, syscall: 'ioctl(TUNSETIFF,IFF_VNET_HDR)' });
    const r = out.report;
    expect(r).toMatchObject({ name, mtu: 1400, mac: '02:13:00:00:00:01', up: true });
    for (const k of ['loopbackUp', 'mtu', 'mac', 'ipv4', 'txQueueLen', 'up', 'defaultGateway']) expect([k, r.steps[k]]).toEqual([k, BY_RTNETLINK]);
    // IPv6 has no ioctl here: rtnetlink is its only way.
    expect(r.steps.ipv6).toEqual({ way: 'rtnetlink', ioctlError: null, rtnetlinkError: null });
    expect(r.steps.defaultGateway6).toEqual({ way: 'rtnetlink', ioctlError: null, rtnetlinkError: null });
  });

  it('openTapInNamespace does the same in its forked helper and brings the report back', () => {
    const here = newNetns();
    const target = newNetns();
    const name = `i13n-${hex(3)}`;
    const out = underGvisor(
      here,
      `const h = native.openTapInNamespace({ target: { netnsPath: '/run/netns/${target}' }, tap: { name: '${name}', vnetHdr: true, offloads: 0x07 }, configure: ${cfg(name)} });
// While the fd is open, the tap exists: check it from inside.
out = { h, link: JSON.parse(ip('-j', '-n', '${target}', 'link', 'show', 'dev', '${name}'))[0] };
native.closeFd(h.fd);`,
    );
    expect(out.h).toMatchObject({ name, vnetHdr: false, offloads: 0, netnsFd: -1 });
    expect(out.h.vnetFallback).toMatchObject({ code: 'EINVAL', syscall: 'ioctl(TUNSETIFF,IFF_VNET_HDR)' });
    expect(out.h.config.steps.up).toEqual(BY_RTNETLINK);
    expect(out.h.config.steps.defaultGateway).toEqual(BY_RTNETLINK);
    expect(out.h.config).toMatchObject({ mtu: 1400, mac: '02:13:00:00:00:01', up: true });
    expect(out.link).toMatchObject({ mtu: 1400, address: '02:13:00:00:00:01' });
  });

  it('configures a persistent tap and leaves it as asked (checked by ip from outside)', () => {
    const ns = newNetns();
    const name = `i13n-${hex(3)}`;
    execFileSync('ip', ['-n', ns, 'tuntap', 'add', 'dev', name, 'mode', 'tap']);
    const out = underGvisor(ns, `out = native.configureInterface(${cfg(name)});`);
    expect(out.steps.mtu).toEqual(BY_RTNETLINK);
    expectConfigured(ns, name);
  });
});

describe('under an older gVisor (rtnetlink takes only address requests)', () => {
  it('goes on without what the interface does not need, and says what it kept', () => {
    const ns = newNetns();
    const name = `i13n-${hex(3)}`;
    execFileSync('ip', ['-n', ns, 'tuntap', 'add', 'dev', name, 'mode', 'tap']);
    const out = underGvisor(
      ns,
      `out = native.configureInterface({ name: '${name}', mtu: 9000, txQueueLen: 100, ipv4: '10.77.10.2', prefixLength: 24 });`,
      'old',
    );
    expect(out.steps.mtu).toEqual({ way: 'unchanged', ioctlError: 'ENOTTY', rtnetlinkError: 'ENOTSUP' });
    expect(out.steps.txQueueLen).toEqual({ way: 'unchanged', ioctlError: 'ENOTTY', rtnetlinkError: 'ENOTSUP' });
    expect(out.steps.ipv4).toEqual(BY_RTNETLINK);
    expect(out.mtu).toBe(1500);
    expect(ipJson(ns, ['addr', 'show', 'dev', name])[0].addr_info).toContainEqual(expect.objectContaining({ local: '10.77.10.2', prefixlen: 24 }));
  });

  it('fails with the setting, both errnos and a hint when the link stays down; accepts a link and route already in place', () => {
    const ns = newNetns();
    const name = `i13n-${hex(3)}`;
    execFileSync('ip', ['-n', ns, 'tuntap', 'add', 'dev', name, 'mode', 'tap']);
    const out = underGvisor(
      ns,
      `const down = err(() => native.configureInterface({ name: '${name}', ipv4: '10.77.11.2', prefixLength: 24, up: true }));
ip('link', 'set', '${name}', 'up');
const noRoute = err(() => native.configureInterface({ name: '${name}', defaultGateway: '10.77.11.1' }));
ip('route', 'add', 'default', 'via', '10.77.11.1', 'dev', '${name}');
const ok = native.configureInterface({ name: '${name}', up: true, defaultGateway: '10.77.11.1' });
out = { down, noRoute, ok };`,
      'old',
    );
    expect(out.down).toMatchObject({ name: 'TapError', code: 'ENOTSUP', syscall: 'rtnetlink(RTM_NEWLINK,flags)' });
    expect(out.down.hint).toMatch(/neither the ioctl \(ENOTTY\) nor rtnetlink \(ENOTSUP\) could bring the link up/);
    expect(out.down.report.steps.ipv4).toEqual(BY_RTNETLINK);
    expect(out.down.report.steps.up).toEqual({ way: null, ioctlError: 'ENOTTY', rtnetlinkError: 'ENOTSUP' });
    expect(out.noRoute).toMatchObject({ name: 'TapError', syscall: 'rtnetlink(RTM_NEWROUTE)' });
    expect(out.noRoute.hint).toMatch(/add the IPv4 default route/);
    // Already up: nothing to change, no error. The route is there: neither way could add it, and it needs none.
    expect(out.ok.steps.up).toEqual({ way: 'unchanged', ioctlError: null, rtnetlinkError: null });
    expect(out.ok.steps.defaultGateway).toEqual({ way: 'unchanged', ioctlError: 'ENOTTY', rtnetlinkError: 'ENOTSUP' });
  });
});
