/** What every suite gets: options, the cleanup registry, tool paths, a log. */
import { createServer } from 'node:net';
import type { Tools } from './peers.js';
import type { Cleanup } from './sys.js';

export interface BenchContext {
  c: Cleanup;
  /** iperf3 duration. */
  seconds: number;
  reps: number;
  tools: Tools;
  /** node + the compiled usernet CLI. */
  node: string;
  usernetCli: string;
  /** Compiled bench/tx/txbench.c, or null without a C compiler. */
  txbench: string | null;
  pastaOk: boolean;
  /** The pasta binary the pasta cells run (current pasta built by tools/build-pasta.ts, else Debian's). */
  pastaBin: string;
  log: (s: string) => void;
  /** Seconds for the engine micro-benchmarks' steady run. */
  microSeconds: number;
}

/** A TCP port free on 127.0.0.1 right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      const port = typeof a === 'object' && a !== null ? a.port : 0;
      s.close(() => resolve(port));
    });
  });
}
