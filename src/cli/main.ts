#!/usr/bin/env node
/**
 * The `usernet` executable. Its first import makes SIGUSR1 usernet's before any
 * other module loads (see stats-signal.ts); the command line is handled in
 * usernet.ts, loaded after it.
 */
import '../stats-signal.js';

await import('./usernet.js');
