/**
 * A bootable test VM without installing anything: Debian's kernel package
 * (linux-image-amd64's dependency) fetched with `apt-get download` and
 * unpacked with `dpkg -x` into a cache directory reused across runs, and a
 * busybox initramfs built here (newc cpio written in TypeScript) with
 * Debian's busybox-static, the virtio modules the kernel has as modules, and
 * the init script the test gives.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from './harness.js';

/** Shared by runs (not per test): the download is 70 MB. */
export const VM_CACHE = join(tmpdir(), 'usernet-vm-cache');

/** Load order; a module built into the kernel has no file and is skipped. */
const MODULES = ['virtio_ring', 'virtio', 'virtio_pci_modern_dev', 'virtio_pci_legacy_dev', 'virtio_pci', 'failover', 'net_failover', 'virtio_net'];

export interface VmImage {
  kernel: string;
  /** Module files (name, bytes) in load order. */
  modules: { name: string; data: Buffer }[];
  busybox: Buffer;
}

function unpacked(pattern: RegExp, what: string): string | null {
  mkdirSync(VM_CACHE, { recursive: true });
  let deb = readdirSync(VM_CACHE).find((f) => pattern.test(f) && f.endsWith('.deb'));
  if (deb === undefined) {
    const r = run('sh', ['-c', `cd ${VM_CACHE} && apt-get download ${what}`], 300_000);
    if (r.status !== 0) return null;
    deb = readdirSync(VM_CACHE).find((f) => pattern.test(f) && f.endsWith('.deb'));
    if (deb === undefined) return null;
  }
  const dir = join(VM_CACHE, deb.replace(/\.deb$/, ''));
  if (!existsSync(join(dir, '.done'))) {
    mkdirSync(dir, { recursive: true });
    if (run('dpkg', ['-x', join(VM_CACHE, deb), dir], 120_000).status !== 0) return null;
    writeFileSync(join(dir, '.done'), '');
  }
  return dir;
}

/** The image, or a reason it cannot be had here (no apt, no network to the mirror). */
export function vmImage(): VmImage | string {
  const dep = run('apt-cache', ['depends', 'linux-image-amd64']);
  const m = /Depends: (linux-image-[0-9][^\s]*-amd64)/.exec(dep.stdout);
  if (m === null) return 'apt-cache does not know linux-image-amd64';
  const kdir = unpacked(new RegExp(`^${m[1].replace(/[.+]/g, '\\$&')}_`), m[1]);
  if (kdir === null) return `apt-get download ${m[1]} failed`;
  const bdir = unpacked(/^busybox-static_/, 'busybox-static');
  if (bdir === null) return 'apt-get download busybox-static failed';
  const boot = join(kdir, 'boot');
  const vmlinuz = readdirSync(boot).find((f) => f.startsWith('vmlinuz-'));
  if (vmlinuz === undefined) return 'no vmlinuz in the kernel package';
  const release = vmlinuz.slice('vmlinuz-'.length);
  const modRoot = join(kdir, 'lib', 'modules', release, 'kernel');
  const files = new Map<string, string>();
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (e.isDirectory()) walk(join(d, e.name));
      else if (e.name.endsWith('.ko')) files.set(e.name.slice(0, -3), join(d, e.name));
    }
  };
  walk(join(modRoot, 'drivers', 'virtio'));
  walk(join(modRoot, 'drivers', 'net'));
  walk(join(modRoot, 'net', 'core'));
  const modules = MODULES.filter((n) => files.has(n)).map((n) => ({ name: n, data: readFileSync(files.get(n) as string) }));
  return { kernel: join(boot, vmlinuz), modules, busybox: readFileSync(join(bdir, 'bin', 'busybox')) };
}

/** newc cpio: enough for an initramfs (regular files and directories, root-owned). */
export function cpio(entries: { path: string; mode: number; data?: Buffer }[]): Buffer {
  const parts: Buffer[] = [];
  let ino = 1;
  const pad = (n: number) => Buffer.alloc((4 - (n % 4)) % 4);
  const add = (path: string, mode: number, data: Buffer) => {
    const name = Buffer.from(`${path}\0`);
    const f = [ino++, mode, 0, 0, 1, 0, data.length, 0, 0, 0, 0, name.length, 0];
    const hdr = Buffer.from(`070701${f.map((v) => v.toString(16).padStart(8, '0')).join('')}`);
    parts.push(hdr, name, pad(hdr.length + name.length), data, pad(data.length));
  };
  for (const e of entries) add(e.path, e.mode, e.data ?? Buffer.alloc(0));
  add('TRAILER!!!', 0, Buffer.alloc(0));
  return Buffer.concat(parts);
}

/** An initramfs: busybox as /bin/busybox, the modules under /lib, `init` as /init. */
export function initramfs(img: VmImage, init: string, extra: { path: string; text: string }[] = []): Buffer {
  const dir = 0o040755;
  const exe = 0o100755;
  const file = 0o100644;
  return cpio([
    ...['bin', 'sbin', 'lib', 'proc', 'sys', 'dev', 'tmp', 'etc', 'www', 'usr', 'usr/bin', 'usr/sbin'].map((d) => ({ path: d, mode: dir })),
    { path: 'bin/busybox', mode: exe, data: img.busybox },
    ...img.modules.map((m) => ({ path: `lib/${m.name}.ko`, mode: file, data: m.data })),
    { path: 'lib/modules.list', mode: file, data: Buffer.from(img.modules.map((m) => m.name).join('\n') + '\n') },
    { path: 'init', mode: exe, data: Buffer.from(init) },
    ...extra.map((e) => ({ path: e.path, mode: exe, data: Buffer.from(e.text) })),
  ]);
}
