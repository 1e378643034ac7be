/**
 * Many namespaces: one `usernet daemon` serving MANY_NAMESPACES namespaces
 * against as many slirp4netns processes, one per namespace (how rootless
 * engines use slirp4netns).
 *
 * - Attach time per namespace: usernet, the API call (POST /v1/guests, which
 *   opens, configures and bridges the tap) from request to answer;
 *   slirp4netns, from spawn until its tap carries 10.0.2.100 (--configure),
 *   polled every 5 ms. Medians over the namespaces.
 * - RSS: the daemon's once every namespace is attached (after its warm-up and
 *   a second to settle), against the sum over the slirp4netns processes.
 * - A ping from the last namespace to the gateway checks that each setup works.
 */
import { request } from 'node:http';
import { join } from 'node:path';
import type { BenchContext } from '../lib/context.js';
import { sample, type Row } from '../lib/results.js';
import { must, rssKiB, sh, sleep } from '../lib/sys.js';

export const MANY_NAMESPACES = 50;

function post(socketPath: string, path: string, body: unknown): Promise<number> {
  const payload = JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = request(
      { socketPath, method: 'POST', path, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) } },
      (res) => {
        let text = '';
        res.setEncoding('utf8').on('data', (d: string) => (text += d));
        res.on('end', () => (res.statusCode === 201 ? resolve(res.statusCode) : reject(new Error(`attach: HTTP ${res.statusCode}: ${text}`))));
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

export async function manySuite(ctx: BenchContext, notes: string[]): Promise<Row[]> {
  const usernetAttachMs: number[] = [];
  const slirpAttachMs: number[] = [];
  let usernetKiB: number | null;
  let slirpKiB: number | null = null;

  let mark = ctx.c.mark();
  try {
    const sock = join(ctx.c.tmpdir(), 'api.sock');
    const d = ctx.c.spawn(ctx.node, [ctx.usernetCli, 'daemon', '--api-socket', sock, '--log-level', 'info'], 'usernet daemon');
    await d.waitFor(/warm-up/, 30_000);
    let last = '';
    for (let i = 0; i < MANY_NAMESPACES; i++) {
      const ns = ctx.c.netns(`many${i}`);
      const t0 = performance.now();
      await post(sock, '/v1/guests', { netns: `/run/netns/${ns}`, id: `n${i}` });
      usernetAttachMs.push(performance.now() - t0);
      last = ns;
    }
    must('ip', ['netns', 'exec', last, 'ping', '-c', '1', '-W', '5', '10.0.2.2']);
    await sleep(1_000);
    usernetKiB = rssKiB(d.pid);
    ctx.log(`  usernet daemon, ${MANY_NAMESPACES} namespaces: RSS ${usernetKiB} KiB`);
  } finally {
    await ctx.c.release(mark);
  }

  if (ctx.tools.slirp4netns) {
    mark = ctx.c.mark();
    try {
      const pids: number[] = [];
      let last = '';
      for (let i = 0; i < MANY_NAMESPACES; i++) {
        const ns = ctx.c.netns(`slm${i}`);
        const t0 = performance.now();
        const p = ctx.c.spawn('slirp4netns', ['--configure', '--netns-type=path', `/run/netns/${ns}`, 'tap0'], 'slirp4netns');
        const deadline = Date.now() + 10_000;
        while (!/10\.0\.2\.100/.test(sh('ip', ['-n', ns, '-4', 'addr', 'show', 'tap0']).stdout)) {
          if (!p.running) throw new Error(`slirp4netns exited: ${p.stderr.trim()}`);
          if (Date.now() > deadline) throw new Error('slirp4netns did not configure tap0 within 10 s');
          await sleep(5);
        }
        slirpAttachMs.push(performance.now() - t0);
        pids.push(p.pid);
        last = ns;
      }
      must('ip', ['netns', 'exec', last, 'ping', '-c', '1', '-W', '5', '10.0.2.2']);
      await sleep(1_000);
      let sum = 0;
      for (const pid of pids) sum += rssKiB(pid) ?? 0;
      slirpKiB = sum;
      ctx.log(`  ${MANY_NAMESPACES} slirp4netns: RSS ${slirpKiB} KiB in all`);
    } finally {
      await ctx.c.release(mark);
    }
  }
  notes.push(
    `Many namespaces: one usernet daemon with ${MANY_NAMESPACES} namespaces attached through its API against ${MANY_NAMESPACES} slirp4netns ` +
      'processes (--configure, one per namespace); RSS is the daemon\'s against the sum of theirs, attach time the API call against spawn-to-configured.',
  );
  const mib = (k: number | null) => (k === null ? [] : [k / 1024]);
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  return [
    {
      group: 'Many namespaces',
      metric: `RSS for ${MANY_NAMESPACES} namespaces`,
      unit: 'MiB',
      higherIsBetter: false,
      values: { usernet: sample(mib(usernetKiB)), ...(slirpKiB === null ? {} : { slirp4netns: sample(mib(slirpKiB)) }) },
    },
    {
      group: 'Many namespaces',
      metric: 'attach time per namespace (median)',
      unit: 'ms',
      higherIsBetter: false,
      values: {
        usernet: sample(usernetAttachMs.length > 0 ? [median(usernetAttachMs)] : []),
        ...(slirpAttachMs.length > 0 ? { slirp4netns: sample([median(slirpAttachMs)]) } : {}),
      },
    },
  ];
}
