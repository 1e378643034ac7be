import { describe, expect, it } from 'vitest';
import { getopt, parseSlirpArgs, SlirpUsageError, unsupportedOption, type SlirpOptions } from '../../../src/slirp4netns/options.js';
import { slirpUsage } from '../../../src/slirp4netns/help.js';

function run(argv: string[]): SlirpOptions {
  const c = parseSlirpArgs(argv);
  if (c.kind !== 'run') throw new Error(`expected run, got ${c.kind}`);
  return c.options;
}

function usage(argv: string[]): string {
  try {
    parseSlirpArgs(argv);
  } catch (err) {
    expect(err).toBeInstanceOf(SlirpUsageError);
    return (err as Error).message;
  }
  throw new Error('no error');
}

describe('slirp4netns command line', () => {
  it('has slirp4netns defaults', () => {
    const o = run(['1234', 'tap0']);
    expect(o).toMatchObject({
      pid: 1234,
      tapName: 'tap0',
      netnsType: 'pid',
      configure: false,
      exitFd: -1,
      readyFd: -1,
      mtu: 1500,
      cidr: '10.0.2.0/24',
      network: 0x0a000200,
      prefix: 24,
      apiSocket: null,
      disableHostLoopback: false,
      disableDns: false,
      macAddress: -1,
      usernsPath: null,
      outboundAddr: null,
    });
  });

  it('takes long options as --x=V and --x V, short ones as -r3 and -r 3', () => {
    const a = run(['--mtu=65520', '--ready-fd', '3', '--exit-fd=4', '--api-socket', '/tmp/a.sock', '1', 'tap0']);
    const b = run(['-m', '65520', '-r3', '-e', '4', '-a/tmp/a.sock', '1', 'tap0']);
    for (const o of [a, b]) {
      expect(o.mtu).toBe(65520);
      expect(o.readyFd).toBe(3);
      expect(o.exitFd).toBe(4);
      expect(o.apiSocket).toBe('/tmp/a.sock');
    }
  });

  it('groups short flags, permutes options after positionals, honours --', () => {
    const o = run(['-c', '1', '--disable-dns', 'tap0', '-r', '5', '--disable-host-loopback']);
    expect(o).toMatchObject({ configure: true, disableDns: true, readyFd: 5, disableHostLoopback: true, pid: 1, tapName: 'tap0' });
    const g = run(['-cr7', '2', 'tap1']);
    expect(g).toMatchObject({ configure: true, readyFd: 7 });
    const p = run(['--netns-type=path', '--', '/run/netns/-odd', 'tap0']);
    expect(p).toMatchObject({ netnsType: 'path', target: '/run/netns/-odd', pid: -1 });
  });

  it('accepts unambiguous prefixes of long options, like getopt_long', () => {
    expect(run(['--conf', '--netns=path', '/run/netns/x', 'tap0'])).toMatchObject({ configure: true, netnsType: 'path' });
    expect(usage(['--disable', '1', 'tap0'])).toMatch(/ambiguous/);
  });

  it('parses the rest of the 1.2.0 options as rootlesskit and podman pass them', () => {
    const rk = run(['--mtu', '65520', '-r', '3', '--disable-host-loopback', '--cidr', '10.0.3.0/24', '--api-socket', '/d/.s4nn.sock', '99', 'tap0']);
    expect(rk).toMatchObject({ network: 0x0a000300, prefix: 24, apiSocket: '/d/.s4nn.sock', pid: 99 });
    const pm = run([
      '--disable-host-loopback', '--mtu=65520', '--cidr=10.0.2.0/24', '--outbound-addr=192.0.2.1', '-c', '-e', '3', '-r', '4',
      '--macaddress=02:00:00:00:00:05', '--userns-path=/proc/5/ns/user', '--netns-type=path', '/run/netns/n1', 'tap0',
    ]);
    expect(pm).toMatchObject({ configure: true, exitFd: 3, readyFd: 4, outboundAddr: '192.0.2.1', macAddress: 0x02_00_00_00_00_05, usernsPath: '/proc/5/ns/user' });
    expect(run(['--outbound-addr', 'eth0', '1', 'tap0']).outboundAddr).toBe('eth0');
    expect(run(['--target-type=netns', '1', 'tap0']).tapName).toBe('tap0');
  });

  it('help and version win over everything else', () => {
    expect(parseSlirpArgs(['--help']).kind).toBe('help');
    expect(parseSlirpArgs(['-h', 'junk']).kind).toBe('help');
    expect(parseSlirpArgs(['-v']).kind).toBe('version');
    expect(parseSlirpArgs(['--version']).kind).toBe('version');
  });

  it("rejects bad input with slirp4netns 1.2.0's words, usage text where it prints one, the program name where getopt adds it", () => {
    // [argv, message, usage text follows, "PROG: " prefix]
    const table: [string[], string, boolean, boolean][] = [
      [[], '', true, false],
      [['1'], '', true, false],
      [['--bogus', '1', 'tap0'], "unrecognized option '--bogus'", true, true],
      [['-x', '1', 'tap0'], "invalid option -- 'x'", true, true],
      [['1', 'tap0', '-r'], "option requires an argument -- 'r'", true, true],
      [['1', 'tap0', '--mtu'], "option '--mtu' requires an argument", true, true],
      [['--configure=1', '1', 'tap0'], "option '--configure' doesn't allow an argument", true, true],
      [['--disable', '1', 'tap0'], "option '--disable' is ambiguous; possibilities: '--disable-host-loopback' '--disable-dns'", true, true],
      [['abc', 'tap0'], 'PID must be a positive integer', true, false],
      [['0', 'tap0'], 'PID must be a positive integer', true, false],
      [['--mtu=65522', '1', 'tap0'], 'MTU must be a positive integer (< 65522)', true, false],
      [['--mtu=0', '1', 'tap0'], 'MTU must be a positive integer (< 65522)', true, false],
      [['--mtu=abc', '1', 'tap0'], 'MTU must be a positive integer (< 65522)', true, false],
      [['--cidr=10.0.2.0/26', '1', 'tap0'], 'prefix length needs to be 1-25', false, false],
      [['--cidr=10.0.2.0/0', '1', 'tap0'], 'prefix length needs to be 1-25', false, false],
      [['--cidr=banana', '1', 'tap0'], 'invalid CIDR: banana', false, false],
      [['--cidr=10.0.2.0', '1', 'tap0'], 'invalid CIDR: 10.0.2.0', false, false],
      [['--cidr=10.0.2.0/123', '1', 'tap0'], 'invalid CIDR: 10.0.2.0/123', false, false],
      [['--cidr=300.0.2.0/24', '1', 'tap0'], 'invalid network address: 300.0.2.0', false, false],
      [['--cidr=10.0.2.100/24', '1', 'tap0'], 'CIDR needs to be a network address like 10.0.2.0/24, not like 10.0.2.100/24', false, false],
      [['--cidr=10.0.3.0/23', '1', 'tap0'], 'CIDR needs to be a network address like 10.0.2.0/24, not like 10.0.2.100/24', false, false],
      [['--target-type=foo', '1', 'tap0'], '--target-type must be either "netns" or "bess"', true, false],
      [['--target-type=bess', '1', 'tap0'], '--target-type=bess is not supported by usernet (only netns)', false, false],
      [['-r', 'x', '1', 'tap0'], 'ready-fd must be a non-negative integer', true, false],
      [['-e', '-1', '1', 'tap0'], 'exit-fd must be a non-negative integer', true, false],
      [['--macaddress=02:00:00:00:00:01', '1', 'tap0'], '--macaddr cannot be specified when --configure or -c is not specified', true, false],
      [['-c', '--macaddress=zz', '1', 'tap0'], '"zz" is an invalid MAC address.', false, false],
      [['-c', '--macaddress=01:00:00:00:00:01', '1', 'tap0'], '"01:00:00:00:00:01" is an invalid MAC address. (usernet: it is a multicast address)', false, false],
      [['--outbound-addr=no such interface', '1', 'tap0'], 'outbound-addr has to be valid ipv4 address or interface name.', false, false],
    ];
    for (const [argv, message, withUsage, prefixed] of table) {
      let got: SlirpUsageError | null = null;
      try {
        parseSlirpArgs(argv);
      } catch (err) {
        expect(err).toBeInstanceOf(SlirpUsageError);
        got = err as SlirpUsageError;
      }
      expect({ argv, message: got?.message, usage: got?.usage, prefixed: got?.prefixed }).toEqual({ argv, message, usage: withUsage, prefixed });
    }
  });

  it('checks options in the order getopt returns them: -h and -v stop there, an earlier bad value wins', () => {
    expect(parseSlirpArgs(['-h', '--bogus']).kind).toBe('help');
    expect(parseSlirpArgs(['-v', '--mtu=0']).kind).toBe('version');
    expect(usage(['--mtu=0', '-h'])).toBe('MTU must be a positive integer (< 65522)');
    expect(usage(['--bogus', '-h'])).toBe("unrecognized option '--bogus'");
  });

  it('reads numbers as strtol does (leading blanks and a sign), every netns-type but "pid" as a path, extra positionals as a warning', () => {
    expect(run(['-e', ' 5', '--mtu', '+70', ' 7', 'tap0'])).toMatchObject({ exitFd: 5, mtu: 70, pid: 7 });
    expect(run(['--netns-type=foo', '/run/netns/x', 'tap0'])).toMatchObject({ netnsType: 'path', target: '/run/netns/x' });
    const c = parseSlirpArgs(['1', 'tap0', 'extra']);
    expect(c.kind === 'run' && c.warnings).toEqual(['WARNING: too many arguments']);
  });

  it('checks --userns-path and the netns path with the probe it is given, in slirp4netns order', () => {
    const probe = (p: string) => (p.startsWith('/missing') ? 'No such file or directory' : null);
    const refuse = (argv: string[]) => {
      try {
        parseSlirpArgs(argv, probe);
      } catch (err) {
        return (err as SlirpUsageError).message;
      }
      throw new Error('no error');
    };
    expect(refuse(['--userns-path=/missing/u', '--bogus', '1', 'tap0'])).toBe("userns path doesn't exist: /missing/u");
    expect(refuse(['--netns-type=path', '--cidr=x', '/missing/n', 'tap0'])).toBe('existing path expected when --netns-type=path: No such file or directory');
    expect(run(['--netns-type=path', '/run/netns/x', 'tap0'])).toMatchObject({ target: '/run/netns/x' });
  });

  it('refuses what usernet cannot serve with the words slirp4netns prints where it fails on the same input', () => {
    expect(unsupportedOption(run(['1', 'a/b']))).toMatch(/^ioctl\(TUNSETIFF\): Invalid argument \(usernet: /);
    expect(unsupportedOption(run(['1', 'sixteen-bytes-xx']))).toMatch(/^ioctl\(TUNSETIFF\): Invalid argument/);
    expect(unsupportedOption(run(['--mtu=67', '1', 'tap0']))).toMatch(/^cannot set MTU: Invalid argument \(usernet: the MTU must be at least 68\)/);
    expect(unsupportedOption(run(['-a', 'x'.repeat(108), '1', 'tap0']))).toBe('the specified API socket path is too long (>= 108)');
    expect(unsupportedOption(run(['-a', 'x'.repeat(107), '1', 'tap0']))).toBeNull();
  });

  it('names what usernet refuses (IPv6) and why; sandbox and seccomp are accepted', () => {
    expect(unsupportedOption(run(['1', 'tap0']))).toBeNull();
    expect(unsupportedOption(run(['-6', '1', 'tap0']))).toBeNull();
    expect(unsupportedOption(run(['--enable-ipv6', '--mtu=1000', '1', 'tap0']))).toMatch(/IPv6 needs an MTU of at least 1280/);
    expect(unsupportedOption(run(['--outbound-addr6=::1', '1', 'tap0']))).toBeNull();
    expect(unsupportedOption(run(['--enable-sandbox', '1', 'tap0']))).toBeNull();
    expect(unsupportedOption(run(['--enable-seccomp', '1', 'tap0']))).toBeNull();
    const both = run(['--enable-sandbox', '--enable-seccomp', '1', 'tap0']);
    expect(both.enableSandbox).toBe(true);
    expect(both.enableSeccomp).toBe(true);
  });

  it('--help advertises every option by name (all of them work)', () => {
    const text = slirpUsage('slirp4netns');
    for (const name of [
      '--configure', '--exit-fd', '--ready-fd', '--mtu', '--api-socket', '--cidr', '--disable-host-loopback',
      '--netns-type', '--userns-path', '--outbound-addr', '--disable-dns', '--macaddress', '--help', '--version',
      '--enable-sandbox', '--enable-seccomp', '--enable-ipv6', '--outbound-addr6', '-6,',
    ]) {
      expect(text).toContain(name);
    }
  });

  it('getopt keeps the last value of a repeated option', () => {
    expect(getopt(['--mtu=1', '-m', '2', 'a']).values.get('mtu')).toBe('2');
  });
});
