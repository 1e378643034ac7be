// A closed FrameIo / TcpSockets lets go of its JS callbacks and buffers. The
// callbacks close over the objects that wrap the native ones, so while the
// native side held them strongly nothing in that cycle was ever collected
// (a removed tap kept its 4 MiB receive area; the warm-up's whole runtime
// stayed). Runs in a child Node with --expose-gc.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const addon = fileURLToPath(new URL('../../src/native/addon.ts', import.meta.url));

function child(body: string): any {
  const script = join(tmpdir(), `usn-release-${randomBytes(4).toString('hex')}.mts`);
  writeFileSync(
    script,
    `import { native } from ${JSON.stringify(addon)};
const gc = (globalThis as any).gc as () => void;
// A FinalizationRegistry, not WeakRefs: V8 keeps a WeakRef's target for the rest of the job that made it.
const dead = new Set<string>();
const registry = new FinalizationRegistry<string>((name) => dead.add(name));
const watch = (o: object, name: string) => registry.register(o, name);
/** Collects until every watched object is gone (native finalizers run after a GC, in an immediate); what is left. */
async function survivors(names: string[]): Promise<string[]> {
  for (let i = 0; i < 10; i++) {
    gc();
    await new Promise((r) => setImmediate(r));
    if (names.every((n) => dead.has(n))) break;
  }
  return names.filter((n) => !dead.has(n));
}
async function main(): Promise<unknown> {
${body}
}
main().then((r) => { console.log(JSON.stringify(r)); process.exit(0); }, (e) => { console.log(JSON.stringify({ failed: String(e?.stack ?? e) })); process.exit(1); });
`,
  );
  const tsx = fileURLToPath(new URL('../../node_modules/tsx/dist/esm/index.mjs', import.meta.url));
  try {
    const out = execFileSync(process.execPath, ['--expose-gc', '--import', tsx, script], { encoding: 'utf8' });
    const lines = out.trim().split('\n');
    return JSON.parse(lines[lines.length - 1]);
  } finally {
    rmSync(script, { force: true });
  }
}

describe('native objects after close', () => {
  it('a closed FrameIo releases its callbacks and registered buffers', () => {
    const r = child(`
      let open = 0;
      // In a plain function: a suspended async function keeps its dead locals in its saved registers.
      const make = () => {
        const [a, b] = native.framePair();
        const rx = new ArrayBuffer(64 * 2048);
        const extra = new ArrayBuffer(1 << 20);
        const holder: { io: any } = { io: null };
        // The callback closes over the FrameIo's wrapper: the cycle that must not be kept alive.
        holder.io = native.createFrameIo({ fd: a, rx, slotSize: 2048, slotCount: 64, lengths: new Uint32Array(64), onBatch: () => holder.io, onError: () => holder.io });
        holder.io.registerBuffer(extra);
        holder.io.start();
        watch(rx, 'rx' + open);
        watch(extra, 'extra' + open);
        watch(holder.io, 'io' + open);
        holder.io.close();
        native.closeFd(b);
        open++;
      };
      make();
      make();
      // Registering on a closed FrameIo is refused (-1), not kept.
      const [c, d] = native.framePair();
      const io = native.createFrameIo({ fd: c, rx: new ArrayBuffer(2048), slotSize: 2048, slotCount: 1, lengths: new Uint32Array(1), onBatch: () => {}, onError: () => {} });
      io.close();
      native.closeFd(d);
      return { open, left: await survivors(['rx0', 'extra0', 'io0', 'rx1', 'extra1', 'io1']), afterClose: io.registerBuffer(new ArrayBuffer(16)) };
    `);
    expect(r.failed).toBeUndefined();
    expect(r.open).toBe(2);
    expect(r.left).toEqual([]);
    expect(r.afterClose).toBe(-1);
  });

  it('a closed TcpSockets releases its callback and events array', () => {
    const r = child(`
      (() => {
        const holder: { io: any } = { io: null };
        const events = new Uint32Array(1024);
        holder.io = native.createTcpSockets({ events, onEvents: () => holder.io });
        holder.io.start();
        watch(events, 'events');
        watch(holder.io, 'io');
        holder.io.close();
      })();
      return { left: await survivors(['events', 'io']) };
    `);
    expect(r.failed).toBeUndefined();
    expect(r.left).toEqual([]);
  });
});
