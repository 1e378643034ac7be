import { describe, expect, it } from 'vitest';
import type { BenchContext } from '../../../bench/lib/context.js';
import { PASTA_NO_FORWARDS, pastaCommand, pastaNetArgs, pastaRun, shellWrap } from '../../../bench/lib/peer-setup.js';

const ctx = { pastaBin: '/opt/pasta' } as BenchContext;

describe('peer set-up commands', () => {
  it('runs pasta as the bench user with slirp4netns addresses, no forwards, the client last', () => {
    expect(pastaRun(ctx, 65520, ['iperf3', '-c', '10.0.2.2'])).toEqual([
      'setpriv', '--reuid', 'bench', '--regid', 'bench', '--init-groups', '--', '/opt/pasta',
      '-f', '--config-net', '-m', '65520', '-a', '10.0.2.100', '-n', '24', '-g', '10.0.2.2',
      '-T', 'none', '-U', 'none', '-t', 'none', '-u', 'none',
      '--', 'iperf3', '-c', '10.0.2.2',
    ]);
    expect(pastaRun(ctx, 1500, ['sleep', '3600'])).toEqual([...pastaCommand(ctx), ...pastaNetArgs(1500), ...PASTA_NO_FORWARDS, '--', 'sleep', '3600']);
  });

  it('keeps a wrapped client alive 0.3 s after it ends, with its exit status', () => {
    expect(shellWrap(['iperf3', '-c', '10.0.2.2', '-J'])).toEqual(['sh', '-c', 'iperf3 -c 10.0.2.2 -J; s=$?; sleep 0.3; exit $s']);
  });
});
