/**
 * V8 heap sizing for the usernet process; the CLI entry imports this before
 * the rest of usernet loads.
 *
 * New space: V8 starts with 1 MiB semi-spaces and doubles them (up to 16 MiB
 * each on 64-bit) whenever a scavenge finds enough survivors, and only a
 * memory-reducing collection shrinks them again, which an idle process rarely
 * has. The start-up warm-up's burst of short-lived objects grew them to
 * 4 MiB, so an idle usernet kept 8 MiB of young generation resident. The data
 * paths allocate nothing per frame, so a larger young generation buys them
 * nothing: growth factor 1 keeps new space at its initial 2 MiB (measured in
 * bench/PROFILE.md, "What an idle usernet's memory is", with the TCP rows
 * before and after). `--max-semi-space-size=1` would do the same but only on
 * node's command line, which the installed `usernet` does not control; this
 * flag is read at each growth, so setting it from the running process works.
 */
import { setFlagsFromString } from 'node:v8';

setFlagsFromString('--semi-space-growth-factor=1');
