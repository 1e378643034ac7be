/**
 * The hints for tap open and configuration failures: each says what to do,
 * with options and commands that exist.
 */
import { describe, expect, it } from 'vitest';
import {
  configureHint,
  errnoName,
  NativeError,
  TAP_HINT_BUSY,
  TAP_HINT_NO_DEVICE,
  TAP_HINT_NOT_A_TAP,
  TAP_HINT_NOT_TUN,
  TAP_HINT_PERMISSION,
  TAP_HINT_VNET,
  TapError,
  translateTapError,
} from '../../src/errors.js';
import type { InterfaceReport } from '../../src/native/types.js';

const sys = (code: string, errno: number, syscall: string, extra: object = {}) =>
  Object.assign(new Error(`${syscall} failed: ${code}`), { code, errno, syscall }, extra);

function hintOf(e: unknown): string {
  expect(e).toBeInstanceOf(TapError);
  return (e as TapError).hint;
}

describe('tap open hints', () => {
  it('a missing /dev/net/tun: modprobe on a host, --device for a container, the gVisor notes', () => {
    for (const code of ['ENOENT', 'ENODEV', 'ENXIO']) {
      expect(hintOf(translateTapError(sys(code, -2, 'open(/dev/net/tun)'), 'tap0'))).toBe(TAP_HINT_NO_DEVICE);
    }
    expect(TAP_HINT_NO_DEVICE).toMatch(/modprobe tun/);
    expect(TAP_HINT_NO_DEVICE).toMatch(/docker run --device \/dev\/net\/tun/);
    expect(TAP_HINT_NO_DEVICE).toMatch(/docs\/gvisor\.md/);
    // usernet itself has no --device option: the hint must not suggest one as ours.
    expect(TAP_HINT_NO_DEVICE).not.toMatch(/^load the tun module or run with --device/);
  });

  it('ENOTTY on TUNSETIFF: the file at /dev/net/tun is not the tun device (/dev/null bound over it)', () => {
    const e = translateTapError(sys('ENOTTY', -25, 'ioctl(TUNSETIFF)'), 'tap0');
    expect(hintOf(e)).toBe(TAP_HINT_NOT_TUN);
    expect(TAP_HINT_NOT_TUN).toMatch(/not the tun device/);
    expect((e as TapError).message).toBe('tap tap0: ioctl(TUNSETIFF) failed: ENOTTY');
  });

  it('EINVAL on TUNSETIFF (after the plain retry): an interface of another kind has the name; pick another', () => {
    expect(hintOf(translateTapError(sys('EINVAL', -22, 'ioctl(TUNSETIFF)'), 'tap0'))).toBe(TAP_HINT_NOT_A_TAP);
    expect(TAP_HINT_NOT_A_TAP).toMatch(/--tap NAME/);
    expect(TAP_HINT_NOT_A_TAP).toMatch(/--tap-name NAME/);
  });

  it('a refused vnet header setting that is not "unsupported": --no-offload', () => {
    expect(hintOf(translateTapError(sys('ENOMEM', -12, 'ioctl(TUNSETOFFLOAD)'), 't'))).toBe(TAP_HINT_VNET);
    expect(hintOf(translateTapError(sys('EFAULT', -14, 'ioctl(TUNSETVNETHDRSZ)'), 't'))).toBe(TAP_HINT_VNET);
    expect(TAP_HINT_VNET).toMatch(/--no-offload/);
  });

  it('keeps the permission and busy hints', () => {
    expect(hintOf(translateTapError(sys('EPERM', -1, 'ioctl(TUNSETIFF)'), 't'))).toBe(TAP_HINT_PERMISSION);
    expect(hintOf(translateTapError(sys('EPERM', -1, 'rtnetlink(RTM_NEWLINK,mtu)'), 't'))).toBe(TAP_HINT_PERMISSION);
    expect(hintOf(translateTapError(sys('EBUSY', -16, 'ioctl(TUNSETIFF)'), 't'))).toBe(TAP_HINT_BUSY);
  });
});

describe('configuration hints', () => {
  const report: InterfaceReport = {
    name: 'tap0',
    steps: {
      mtu: { way: 'unchanged', ioctlError: 'ENOTTY', rtnetlinkError: 'ENOTSUP' },
      ipv4: { way: 'rtnetlink', ioctlError: 'ENOTTY', rtnetlinkError: null },
      up: { way: 'rtnetlink', ioctlError: 'ENOTTY', rtnetlinkError: null },
      defaultGateway: { way: null, ioctlError: 'ENOTTY', rtnetlinkError: 'ENOTSUP' },
    },
    mtu: 1500,
    mac: '02:00:00:00:00:01',
    up: true,
  };

  it('names the setting that could not be applied and both errnos', () => {
    const hint = configureHint(report)!;
    expect(hint).toMatch(/^neither the ioctl \(ENOTTY\) nor rtnetlink \(ENOTSUP\) could add the IPv4 default route on tap0/);
    expect(hint).toMatch(/usernet --tap NAME/);
    expect(hint).toMatch(/docs\/gvisor\.md/);
  });

  it('translateTapError attaches the report and the hint', () => {
    const e = translateTapError(sys('ENOTSUP', -95, 'rtnetlink(RTM_NEWROUTE)', { report }), 'tap0') as TapError;
    expect(e).toBeInstanceOf(TapError);
    expect(e.report).toBe(report);
    expect(e.hint).toBe(configureHint(report));
  });

  it('has no hint when no setting failed both ways', () => {
    const ok: InterfaceReport = { ...report, steps: { mtu: report.steps.mtu } };
    expect(configureHint(ok)).toBeUndefined();
    const e = translateTapError(sys('EIO', -5, 'ioctl(SIOCGIFFLAGS)', { report: ok }), 'tap0');
    expect(e).toBeInstanceOf(NativeError);
    expect(e).not.toBeInstanceOf(TapError);
  });
});

describe('errnoName', () => {
  it('spells errnos as the addon does (libuv names)', () => {
    expect(errnoName(22)).toBe('EINVAL');
    expect(errnoName(25)).toBe('ENOTTY');
    expect(errnoName(95)).toBe('ENOTSUP');
    expect(errnoName(100000)).toBe('E100000');
  });
});
