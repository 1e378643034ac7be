/**
 * The messages between the main thread (shard-set.ts) and the engine shards
 * (shard-worker.ts). Frames between shards are not here: they travel as bare
 * ArrayBuffers over the shards' own MessagePorts (shard-worker.ts).
 */
import type { MessagePort } from 'node:worker_threads';
import type { ForwardSpec } from '../host/port-forwards.js';
import type { RuntimeOptions } from '../options.js';
import type { TapHandle } from '../native/types.js';

/** workerData of a shard. */
export interface ShardInit {
  shard: number;
  shards: number;
  /** The runtime's options as the taps allow them (runtimeOptionsForTaps), without forwards: shard 0 gets those later. */
  options: RuntimeOptions;
  /** forwardPortKey (stack/shard-owner.ts) of every forward's guest port. */
  forwardPorts: number[];
  /** This shard's queue of the tap: its own fd, closed with the shard. */
  handle: TapHandle;
  /** A port to every other shard by shard number; null at this shard's own place. */
  peers: (MessagePort | null)[];
}

/** Requests carry an id; the shard answers each with a 'reply' of that id. */
export type ToShard =
  | { type: 'start-forwards'; id: number; forwards: ForwardSpec[] }
  | { type: 'stats'; id: number }
  | { type: 'warm-up'; id: number }
  | { type: 'stop-warm-up'; id: number }
  | { type: 'close'; id: number };

export type FromShard =
  | { type: 'ready' }
  | { type: 'reply'; id: number; ok: true; value: unknown }
  | { type: 'reply'; id: number; ok: false; message: string; code: string | null }
  /** The shard cannot go on (its tap queue failed): the network is broken. */
  | { type: 'fatal'; message: string }
  | { type: 'closed' };
