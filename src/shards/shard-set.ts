/**
 * Engine shards (issue 17; ARCHITECTURE.md, "Engine shards"): one worker
 * thread per queue of a multi-queue tap, each running a whole Runtime
 * (shard-worker.ts). The main thread keeps the front end's work (namespace,
 * command, signals) and this: starting the shards, handing shard 0 the port
 * forwards, asking for stats, stopping them.
 *
 * How it works
 * - open() starts a worker per queue fd with a MessagePort to every other
 *   worker (frames whose flow another shard owns cross there) and waits
 *   until each has its runtime and tap port up; if one fails, the others are
 *   stopped and the fds closed.
 * - A worker that stops on its own (an uncaught error, its tap queue
 *   failing, an exit) is fatal: onFatal gets one error naming the shard and
 *   why, and the front end stops usernet with it. Half a network (the flows
 *   of the dead shard black-holed while the rest work) is never left running.
 * - close() asks every shard to close its runtime (guest connections reset,
 *   host sockets and the queue fd closed), then ends the threads.
 */
import { MessageChannel, Worker, type MessagePort } from 'node:worker_threads';
import type { Logger } from '../log.js';
import type { RuntimeOptions } from '../options.js';
import type { TapHandle } from '../native/types.js';
import { native } from '../native/addon.js';
import { ConfigError, UsernetError } from '../errors.js';
import { forwardPortKey } from '../../stack/shard-owner.js';
import { hasSocketPorts } from '../socket-port-options.js';
import type { FromShard, ShardInit, ToShard } from './protocol.js';
import { processStats } from '../process-stats.js';

/** A shard failed (start-up, or later: onFatal); the message names the shard. */
export class ShardError extends UsernetError {}

/** How long a shard may take to close before its thread is ended anyway. */
const CLOSE_WAIT_MS = 5_000;

const IP_PROTO = { tcp: 6, udp: 17 } as const;

/**
 * The worker count for --workers (null: not given) on a set-up: one by
 * default, for now. Shards serve one tap's NAT path; where the set-up has
 * more (a capture, VM sockets or VXLAN, metrics, several taps) an explicit
 * --workers N > 1 is refused. Why not the cores available yet: a guest's
 * one-way UDP flow is steered by the kernel's hash until its owner writes on
 * it, so all its frames are handed over one by one (the batching of
 * udp-batch.test.ts fell by half); and a second shard costs about 40 MB of
 * RSS at idle. ARCHITECTURE.md, "Engine shards".
 */
export function workerCount(requested: number | null, o: RuntimeOptions, taps: number, log: Logger): number {
  const unsupported: string[] = [];
  if (taps !== 1) unsupported.push(taps === 0 ? 'no tap' : 'several taps');
  if (o.pcapPath !== null) unsupported.push('--pcap');
  if (hasSocketPorts(o.sockets)) unsupported.push('VM sockets or VXLAN');
  if (o.observe?.metrics) unsupported.push('--metrics');
  if (requested === null) return 1;
  if (requested > 1 && unsupported.length > 0) {
    throw new ConfigError(`--workers ${requested}: engine shards do not serve ${unsupported.join(', ')} yet; use --workers 1`);
  }
  return requested;
}

/** One line on a tap that came back with one queue though shards were wanted: warn when --workers was given, else info. */
export function multiqueueRefused(handle: TapHandle, explicit: boolean, log: Logger): void {
  const f = handle.multiqueueFallback;
  const why = f ? `${f.code} from ${f.syscall}` : 'one queue';
  const line = `tap ${handle.name}: multi-queue refused (${why}); running one worker, no engine shards`;
  if (explicit) log.warn(line);
  else log.info(line);
}

export class ShardSet {
  /** Called once when a shard stops on its own after open(): usernet must stop. */
  onFatal: ((err: Error) => void) | null = null;
  private closing = false;
  private fatal = false;
  private readonly pending = new Map<number, { shard: number; resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  /** Shards whose thread has ended: nothing sent to them is answered. */
  private readonly exited = new Set<number>();
  private nextId = 1;
  private statsTimer: NodeJS.Timeout | null = null;

  private constructor(
    private readonly workers: Worker[],
    private readonly options: RuntimeOptions,
    private readonly log: Logger,
  ) {
    if (options.statsIntervalMs > 0) {
      this.statsTimer = setInterval(() => this.logStats(), options.statsIntervalMs);
      this.statsTimer.unref();
    }
    workers.forEach((w, i) => {
      w.on('message', (m: FromShard) => this.onMessage(i, m));
      w.on('error', (err) => this.die(i, `uncaught ${err.name}: ${err.message}`));
      w.on('exit', (code) => {
        this.exited.add(i);
        if (!this.closing) this.die(i, `its thread exited (code ${code})`);
        const gone = new ShardError('ERR_SHARD', `engine shard ${i} has stopped`);
        for (const [id, p] of this.pending) {
          if (p.shard !== i) continue;
          this.pending.delete(id);
          p.reject(gone);
        }
      });
    });
  }

  get size(): number {
    return this.workers.length;
  }

  /**
   * Starts a shard per queue of `handle` (fd, then queueFds); `options` as
   * the taps allow them (runtimeOptionsForTaps). The shards own the fds from
   * here: closed with them, or here when a start fails.
   */
  static async open(options: RuntimeOptions, log: Logger, handle: TapHandle): Promise<ShardSet> {
    const fds = [handle.fd, ...(handle.queueFds ?? [])];
    const n = fds.length;
    const forwardPorts = (options.forwards ?? []).map((f) => forwardPortKey(IP_PROTO[f.proto], f.guestPort));
    // A channel per pair of shards.
    const peers: (MessagePort | null)[][] = Array.from({ length: n }, () => new Array<MessagePort | null>(n).fill(null));
    for (let i = 0; i < n; i++) {
      for (let j = i + 1; j < n; j++) {
        const { port1, port2 } = new MessageChannel();
        peers[i][j] = port1;
        peers[j][i] = port2;
      }
    }
    const url = new URL('./shard-worker.js', import.meta.url);
    const workers: Worker[] = [];
    const started: Promise<void>[] = [];
    for (let i = 0; i < n; i++) {
      const init: ShardInit = {
        shard: i,
        shards: n,
        // Stats lines come from here, one for the whole set (logStats).
        options: { ...options, forwards: [], statsIntervalMs: 0 },
        forwardPorts,
        handle: { ...handle, fd: fds[i], queueFds: [] },
        peers: peers[i],
      };
      const transfer = peers[i].filter((p): p is MessagePort => p !== null);
      const w = new Worker(url, { workerData: init, transferList: transfer, stdout: false, stderr: false });
      workers.push(w);
      started.push(
        new Promise<void>((resolve, reject) => {
          const onMsg = (m: FromShard) => {
            if (m.type !== 'ready') return;
            off();
            resolve();
          };
          const onErr = (err: Error) => {
            off();
            reject(new ShardError('ERR_SHARD', `shard ${i} did not start: ${err.message}`));
          };
          const onExit = (code: number) => {
            off();
            reject(new ShardError('ERR_SHARD', `shard ${i} did not start (its thread exited with code ${code})`));
          };
          const off = () => {
            w.off('message', onMsg);
            w.off('error', onErr);
            w.off('exit', onExit);
          };
          w.on('message', onMsg);
          w.on('error', onErr);
          w.on('exit', onExit);
        }),
      );
    }
    const results = await Promise.allSettled(started);
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed !== undefined) {
      // A shard that started closes its own fd; the fd of one that did not is still ours.
      await Promise.all(
        workers.map(async (w, i) => {
          if (results[i].status === 'fulfilled') {
            w.postMessage({ type: 'close', id: 0 } satisfies ToShard);
            await waitExit(w);
          } else {
            await w.terminate();
            try {
              native.closeFd(fds[i]);
            } catch {
              // closed already by a shard that got that far
            }
          }
        }),
      );
      throw failed.reason;
    }
    log.info(`${n} engine shards on worker threads, one per tap queue`);
    return new ShardSet(workers, options, log);
  }

  /** Opens the options' forwards (in shard 0, which owns their flows: stack/shard-owner.ts). */
  async startPorts(): Promise<void> {
    const forwards = this.options.forwards ?? [];
    if (forwards.length === 0) return;
    await this.request(0, { type: 'start-forwards', id: 0, forwards });
  }

  /** Every shard warms up its own code (src/warm-up.ts) on a private stack; a failure there is logged, not thrown. */
  startWarmUp(): void {
    for (let i = 0; i < this.workers.length; i++) void this.request(i, { type: 'warm-up', id: 0 }).catch(() => undefined);
  }

  async stopWarmUp(): Promise<void> {
    await Promise.all(this.workers.map((_, i) => this.request(i, { type: 'stop-warm-up', id: 0 }).catch(() => undefined)));
  }

  /** The counters of every shard as one object, as a single runtime's (mergeStats), with each shard's hand-overs. */
  async stats(): Promise<Record<string, unknown>> {
    const all = (await Promise.all(this.workers.map((_, i) => this.request(i, { type: 'stats', id: 0 })))) as Record<string, unknown>[];
    const merged = mergeStats(all);
    merged.process = { ...(merged.process as object), ...processWide() };
    merged.shards = all.map((s, i) => ({ shard: i, handOver: s.handOver }));
    delete merged.handOver;
    return merged;
  }

  /** One stats line for the whole set (SIGUSR1, --stats-interval). */
  logStats(): void {
    this.stats().then(
      (s) => this.log.record('stats', s),
      (err: unknown) => this.log.warn(`stats: ${(err as Error).message}`),
    );
  }

  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    if (this.statsTimer !== null) clearInterval(this.statsTimer);
    await Promise.all(
      this.workers.map(async (w, i) => {
        await this.request(i, { type: 'close', id: 0 }).catch(() => undefined);
        void w.terminate();
        await waitExit(w);
      }),
    );
  }

  private request(shard: number, m: ToShard): Promise<unknown> {
    const id = this.nextId++;
    if (this.exited.has(shard)) return Promise.reject(new ShardError('ERR_SHARD', `engine shard ${shard} has stopped`));
    return new Promise((resolve, reject) => {
      this.pending.set(id, { shard, resolve, reject });
      this.workers[shard].postMessage({ ...m, id });
    });
  }

  private onMessage(shard: number, m: FromShard): void {
    if (m.type === 'reply') {
      const p = this.pending.get(m.id);
      if (p === undefined) return;
      this.pending.delete(m.id);
      if (m.ok) p.resolve(m.value);
      else p.reject(new UsernetError(m.code ?? 'ERR_SHARD', m.message));
    } else if (m.type === 'fatal') {
      this.die(shard, m.message);
    }
  }

  private die(shard: number, why: string): void {
    if (this.closing || this.fatal) return;
    this.fatal = true;
    const err = new ShardError('ERR_SHARD', `engine shard ${shard} of ${this.workers.length} stopped: ${why}`);
    this.log.error(err.message);
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
    this.onFatal?.(err);
  }
}

/** Fields that describe the process or the moment, not a shard's share: the first shard's value, not the sum. */
const NOT_SUMMED = new Set(['time', 'uptimeSeconds', 'mac', 'usoToGuests', 'capacity', 'limit', 'rssBytes', 'fds', 'mtu', 'id']);

/**
 * The shards' stats objects as one: numbers summed (counters, sizes), except
 * NOT_SUMMED; arrays of as many objects (the tap, the bridge's ports: the
 * same in every shard) merged element by element, equal arrays kept once,
 * other arrays joined;
 * objects merged key by key; anything else the first shard's.
 */
export function mergeStats(all: Record<string, unknown>[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const s of all) {
    for (const [k, v] of Object.entries(s)) {
      const cur = out[k];
      if (cur === undefined) out[k] = Array.isArray(v) ? [...(v as unknown[])] : v !== null && typeof v === 'object' ? mergeStats([v as Record<string, unknown>]) : v;
      else if (typeof cur === 'number' && typeof v === 'number') out[k] = NOT_SUMMED.has(k) ? cur : cur + v;
      else if (Array.isArray(cur) && Array.isArray(v)) {
        if (cur.length === v.length && cur.every((x, i) => isObject(x) && isObject(v[i]))) {
          out[k] = cur.map((x, i) => mergeStats([x as Record<string, unknown>, v[i] as Record<string, unknown>]));
        } else if (JSON.stringify(cur) !== JSON.stringify(v)) cur.push(...(v as unknown[]));
      }
      else if (cur !== null && typeof cur === 'object' && v !== null && typeof v === 'object') out[k] = mergeStats([cur as Record<string, unknown>, v as Record<string, unknown>]);
    }
  }
  return out;
}

function isObject(x: unknown): boolean {
  return x !== null && typeof x === 'object' && !Array.isArray(x);
}

/** What only the process as a whole knows: its resident memory and open fds. */
function processWide(): { rssBytes: number; fds: number } {
  const p = processStats();
  return { rssBytes: p.rssBytes, fds: p.fds };
}

/** Resolves when the worker's thread has ended (after its 'closed', or at once if ended); ends it after CLOSE_WAIT_MS. */
function waitExit(w: Worker): Promise<void> {
  return new Promise((resolve) => {
    if (w.threadId === -1) {
      resolve();
      return;
    }
    const t = setTimeout(() => void w.terminate(), CLOSE_WAIT_MS);
    w.once('exit', () => {
      clearTimeout(t);
      resolve();
    });
  });
}
