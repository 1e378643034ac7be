#!/usr/bin/env node
/**
 * The `usernet` executable. Its first import makes SIGUSR1 usernet's before any
 * other module loads (see stats-signal.ts); the command line is handled in
 * usernet.ts, loaded after it; heap-sizing.ts sets V8's heap sizing in between.
 */
import '../stats-signal.js';
import '../heap-sizing.js';

await import('./usernet.js');
