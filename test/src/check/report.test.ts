import { describe, expect, it } from 'vitest';
import { checkExitStatus, formatCheckTable, summary, type CheckRow } from '../../../src/check/report.js';

const row = (over: Partial<CheckRow>): CheckRow => ({ group: 'kernel', name: 'tun', status: 'PASS', detail: 'ok', ...over });

describe('usernet check table', () => {
  it('groups rows, aligns names and prints fixes only for FAIL and WARN', () => {
    const text = formatCheckTable([
      row({ name: '/dev/net/tun', detail: 'opens read-write', fix: 'never shown' }),
      row({ name: 'TSO over IPv4', status: 'WARN', detail: 'refused', fix: 'slower' }),
      row({ group: 'through usernet', name: 'TCP', status: 'FAIL', detail: 'ECONNREFUSED', fix: 'open the firewall' }),
      row({ group: 'through usernet', name: 'UDP', status: 'SKIP', detail: 'not run', fix: 'never shown either' }),
    ]);
    expect(text).toBe(
      [
        'kernel:',
        '  PASS  /dev/net/tun   opens read-write',
        '  WARN  TSO over IPv4  refused',
        '        fix: slower',
        '',
        'through usernet:',
        '  FAIL  TCP            ECONNREFUSED',
        '        fix: open the firewall',
        '  SKIP  UDP            not run',
        '',
        '1 passed, 1 failed, 1 warning, 1 skipped: usernet does not fully work on this machine: see the fixes above',
        '',
      ].join('\n'),
    );
  });

  it('puts a long detail on its own line and keeps every detail on one line', () => {
    const long = 'x'.repeat(70);
    const text = formatCheckTable([row({ detail: `${long}\n  more` })]);
    expect(text.split('\n').slice(0, 3)).toEqual(['kernel:', '  PASS  tun', `        ${long} more`]);
  });

  it('exits 0 only without a FAIL row; WARN and SKIP do not fail', () => {
    expect(checkExitStatus([row({}), row({ status: 'WARN' }), row({ status: 'SKIP' })])).toBe(0);
    expect(checkExitStatus([row({}), row({ status: 'FAIL' })])).toBe(1);
    expect(summary([row({}), row({})])).toBe('2 passed, 0 failed: usernet works on this machine');
  });
});
