/**
 * One engine shard on a worker thread: a whole Runtime (bridge, gateway,
 * NAT, host sockets with their own epoll sets, timers, transmit arena) on one
 * queue of a multi-queue tap. Started by shard-set.ts.
 *
 * How it works
 * - Every frame the queue hands over passes Runtime.steer first, which asks
 *   stack/shard-owner.ts whose it is. This shard's: the bridge as usual,
 *   with no cost but the look at the headers. Another shard's: a copy goes
 *   to that shard as a transferred ArrayBuffer over its MessagePort, and the
 *   owner feeds it to its own bridge as if its queue had read it. BROADCAST:
 *   a copy to every other shard, and this shard takes it too.
 * - Hand-overs allocate a buffer per frame: they are rare by design (the
 *   kernel steers a flow to the queue its owner writes on; see
 *   shard-owner.ts) and the counters say how rare (handedOver/takenOver in
 *   the stats, per shard).
 * - Frames to the guest leave on this shard's queue: writing on any queue
 *   reaches the guest, and doing it from the owner is what teaches the
 *   kernel to steer the flow here.
 * - A failed queue (read error, hang-up) is fatal for the whole network: the
 *   main thread hears it and stops usernet, never a silent half-network.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { Runtime } from '../runtime.js';
import { LocalNames } from '../../stack/dns-local-names.js';
import { openLogger } from '../log.js';
import { BROADCAST, frameOwner } from '../../stack/shard-owner.js';
import { newFrame, type Frame, type Port } from '../../stack/frame.js';
import { VIRTIO_NET_HDR_LEN } from '../../stack/wire/vnet.js';
import { UsernetError } from '../errors.js';
import type { FromShard, ShardInit, ToShard } from './protocol.js';
import { startWarmUp, type RunningWarmUp } from '../warm-up.js';

const init = workerData as ShardInit;
const parent = parentPort;
if (parent === null) throw new UsernetError('ERR_SHARD', 'shard-worker.ts runs on a worker thread');

const send = (m: FromShard) => parent.postMessage(m);
const o = init.options;
const log = openLogger(o.logLevel, o.observe?.logFormat ?? 'text', o.observe?.logFile ?? null);
const me = init.shard;
const shards = init.shards;
const forwardPorts = init.forwardPorts.length === 0 ? null : new Set(init.forwardPorts);

const runtime = new Runtime(o, log, { localNames: new LocalNames() });
runtime.onTapLost = (port, err) => send({ type: 'fatal', message: `shard ${me}: tap ${port.name} queue failed: ${err.message}` });
const tap = runtime.addTap(init.handle);
const hdr = tap.vnet ? VIRTIO_NET_HDR_LEN : 0;

const counters = { handedOver: 0, takenOver: 0, broadcast: 0 };
/** While a frame from another shard goes in: it is ours, not to be steered again. */
let injecting = false;

function copyOut(frame: Frame): ArrayBuffer {
  const ab = new ArrayBuffer(frame.len + hdr);
  new Uint8Array(ab).set(frame.buf.subarray(frame.off - hdr, frame.off + frame.len));
  return ab;
}

runtime.steer = (_from: Port, frame: Frame): boolean => {
  if (injecting) return false;
  const owner = frameOwner(frame.buf, frame.off, frame.len, shards, forwardPorts);
  if (owner === me) return false;
  if (owner === BROADCAST) {
    counters.broadcast++;
    for (const p of init.peers) {
      if (p === null) continue;
      const ab = copyOut(frame);
      p.postMessage(ab, [ab]);
    }
    return false;
  }
  const peer = init.peers[owner];
  if (peer === null || peer === undefined) return false;
  const ab = copyOut(frame);
  peer.postMessage(ab, [ab]);
  counters.handedOver++;
  return true;
};

const inFrame = newFrame();
function takeOver(ab: ArrayBuffer): void {
  const now = runtime.now();
  inFrame.buf = Buffer.from(ab);
  inFrame.off = hdr;
  inFrame.len = ab.byteLength - hdr;
  inFrame.vnet = tap.vnet;
  counters.takenOver++;
  injecting = true;
  try {
    runtime.portSink.input(tap, inFrame, now);
  } finally {
    injecting = false;
  }
  runtime.portSink.flush(now);
}

for (const p of init.peers) {
  if (p === null) continue;
  p.on('message', (m: unknown) => {
    if (m instanceof ArrayBuffer) takeOver(m);
  });
}

function closeAll(): void {
  runtime.close();
  for (const p of init.peers) p?.close();
}

let warm: RunningWarmUp | null = null;

async function handle(m: ToShard): Promise<unknown> {
  switch (m.type) {
    case 'start-forwards':
      for (const f of m.forwards) await runtime.forwards.add(f);
      return null;
    case 'stats':
      return { ...runtime.stats({ macTable: o.observe?.statsMacTable }), handOver: { ...counters } };
    case 'warm-up':
      // Each shard's isolate compiles its own code: each warms up on its own private stack.
      warm ??= startWarmUp(o, log, me === 0 ? 'info' : 'debug');
      return null;
    case 'stop-warm-up': {
      const w = warm;
      warm = null;
      await w?.stop();
      return null;
    }
    case 'close': {
      const w = warm;
      warm = null;
      await w?.stop();
      closeAll();
      return null;
    }
  }
}

parent.on('message', (m: ToShard) => {
  handle(m).then(
    (value) => send({ type: 'reply', id: m.id, ok: true, value }),
    (err: unknown) => send({ type: 'reply', id: m.id, ok: false, message: (err as Error).message, code: err instanceof UsernetError ? err.code : null }),
  );
});

send({ type: 'ready' });
