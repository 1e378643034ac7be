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

export type ToShard =
  | { type: 'start-forwards'; forwards: ForwardSpec[] }
  | { type: 'stats' }
  | { type: 'close' };

export type FromShard =
  | { type: 'ready' }
  | { type: 'forwards-started' }
  | { type: 'failed'; message: string; code: string | null }
  /** The shard cannot go on (its tap queue failed): the network is broken. */
  | { type: 'fatal'; message: string }
  | { type: 'closed' };
