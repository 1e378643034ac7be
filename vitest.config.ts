import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // End-to-end tests create namespaces and taps; running files in parallel on a
    // 2-core machine makes them compete for CPU and slows everything down.
    fileParallelism: false,
    testTimeout: 60_000,
    hookTimeout: 60_000,
    reporters: ['default'],
    // The allocation checks (test/helpers/gc-measure.ts) count collections and heap growth over a
    // run of the data path: with V8's smallest young generation (1 MiB) what the harness and the
    // JIT allocate once per run could fill it and make a collection the path did not cause.
    execArgv: ['--min-semi-space-size=16'],
  },
});
