/**
 * How the suites set up each system's path between a namespace and the
 * host's loopback, in one place so that every suite measures the same
 * set-up:
 *
 * - slirp4netns: `slirp4netns --configure --mtu=M PID tap0` on a namespace
 *   held by a `sleep` we started; its 10.0.2.2 maps to 127.0.0.1.
 * - pasta: as the unprivileged bench user (it refuses namespaces root made
 *   for root), with slirp4netns's addresses (10.0.2.100/24, gateway 10.0.2.2,
 *   which pasta maps to host loopback) and no port forwards either way.
 * - kernel: a veth pair between two namespaces the bench creates.
 * - an iperf3 server on 127.0.0.1 for the clients in the namespaces.
 *
 * Everything spawned or created is registered with the context's Cleanup.
 */
import { freePort, type BenchContext } from './context.js';
import { must, sh, sleep, type Proc } from './sys.js';

/**
 * Wraps a client so that the measured user-space process, which would
 * otherwise exit with it, lives 0.3 s longer: its last CPU sample
 * (utime+stime from /proc) is taken after the transfer ended.
 */
export function shellWrap(args: string[]): string[] {
  return ['sh', '-c', `${args.join(' ')}; s=$?; sleep 0.3; exit $s`];
}

/** An iperf3 server on 127.0.0.1 (TCP and UDP), listening when this resolves. */
export async function hostServer(ctx: BenchContext): Promise<{ port: number; proc: Proc }> {
  const port = await freePort();
  const proc = ctx.c.spawn('iperf3', ['-s', '--forceflush', '-B', '127.0.0.1', '-p', String(port)], 'iperf3 server');
  await proc.waitFor(/Server listening/);
  return { port, proc };
}

/** A namespace with slirp4netns attached and tap0 configured; `release` stops both. */
export async function slirpNamespace(
  ctx: BenchContext,
  mtu: number,
  extraArgs: string[] = [],
): Promise<{ ns: string; pid: number; release: () => Promise<void> }> {
  const mark = ctx.c.mark();
  const ns = ctx.c.netns('slirp');
  const holder = ctx.c.spawn('ip', ['netns', 'exec', ns, 'sleep', '3600'], 'netns holder');
  await sleep(50);
  const slirp = ctx.c.spawn('slirp4netns', ['--configure', `--mtu=${mtu}`, ...extraArgs, String(holder.pid), 'tap0'], 'slirp4netns');
  const deadline = Date.now() + 10_000;
  while (!/10\.0\.2\.100/.test(sh('ip', ['-n', ns, '-4', 'addr', 'show', 'tap0']).stdout)) {
    if (!slirp.running) throw new Error(`slirp4netns exited: ${slirp.stderr.trim()}`);
    if (Date.now() > deadline) throw new Error('slirp4netns did not configure tap0 within 10 s');
    await sleep(50);
  }
  return { ns, pid: slirp.pid, release: () => ctx.c.release(mark) };
}

/** pasta as the unprivileged bench user; its options follow. */
export function pastaCommand(ctx: BenchContext): string[] {
  return ['setpriv', '--reuid', 'bench', '--regid', 'bench', '--init-groups', '--', ctx.pastaBin];
}

/** pasta's namespace, in the foreground: slirp4netns's addresses, gateway 10.0.2.2 (host loopback), MTU `mtu`. */
export function pastaNetArgs(mtu: number): string[] {
  return ['-f', '--config-net', '-m', String(mtu), '-a', '10.0.2.100', '-n', '24', '-g', '10.0.2.2'];
}

/** No port forwards from the host (-t, -u) or from the namespace (-T, -U): the client reaches the host through the gateway only. */
export const PASTA_NO_FORWARDS: readonly string[] = ['-T', 'none', '-U', 'none', '-t', 'none', '-u', 'none'];

/** The command that runs `argv` in a new pasta namespace of MTU `mtu` and ends with it. */
export function pastaRun(ctx: BenchContext, mtu: number, argv: string[]): string[] {
  return [...pastaCommand(ctx), ...pastaNetArgs(mtu), ...PASTA_NO_FORWARDS, '--', ...argv];
}

/** Two namespaces joined by a veth pair; server end gets .1, client end .2. */
export function vethPair(ctx: BenchContext, mtu: number): { server: string; client: string; serverIp: string } {
  const server = ctx.c.netns('ksrv');
  const client = ctx.c.netns('kcli');
  const a = ctx.c.ifname('va');
  const b = ctx.c.ifname('vb');
  must('ip', ['link', 'add', a, 'mtu', String(mtu), 'netns', server, 'type', 'veth', 'peer', 'name', b, 'mtu', String(mtu), 'netns', client]);
  must('ip', ['-n', server, 'addr', 'add', '10.201.0.1/24', 'dev', a]);
  must('ip', ['-n', client, 'addr', 'add', '10.201.0.2/24', 'dev', b]);
  must('ip', ['-n', server, 'link', 'set', a, 'up']);
  must('ip', ['-n', client, 'link', 'set', b, 'up']);
  return { server, client, serverIp: '10.201.0.1' };
}
