/**
 * Entry of the check's probe inside the guest namespace:
 * `node probe-main.js RESULTS CONFIG_JSON` (see probe.ts).
 */
import { writeFileSync } from 'node:fs';
import { runProbes, type ProbeConfig } from './probe.js';

const [resultsPath, configJson] = process.argv.slice(2);
const results = await runProbes(JSON.parse(configJson) as ProbeConfig);
writeFileSync(resultsPath, JSON.stringify(results));
// A probe that timed out may leave a socket holding the event loop.
process.exit(0);
