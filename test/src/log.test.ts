import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger, openLogger } from '../../src/log.js';
import { observabilityOptions } from '../../src/observability-options.js';
import { slirpLogger } from '../../src/slirp4netns/main.js';
import { ConfigError } from '../../src/errors.js';

const T = new Date('2024-03-01T12:34:56.789Z');
const clock = () => T;

function capture(opts: Parameters<typeof createLogger>[2], level: Parameters<typeof createLogger>[0] = 'info') {
  const lines: string[] = [];
  const log = createLogger(level, (l) => lines.push(l), { clock, ...opts });
  return { log, lines };
}

describe('text format', () => {
  it('without timestamps: the old line exactly', () => {
    const { log, lines } = capture({});
    log.info('gateway up');
    expect(lines).toEqual(['usernet: info: gateway up\n']);
  });

  it('with timestamps: ISO 8601 UTC before the words', () => {
    const { log, lines } = capture({ timestamps: true });
    log.warn('tap gone');
    expect(lines).toEqual(['2024-03-01T12:34:56.789Z usernet: warn: tap gone\n']);
  });

  it('fields follow as key=value, quoted when they need it', () => {
    const { log, lines } = capture({});
    log.info('slaac', { ms: 12, addr: 'fd00::1', why: 'no route', ok: true, skip: undefined });
    expect(lines).toEqual(['usernet: info: slaac ms=12 addr=fd00::1 why="no route" ok=true\n']);
  });

  it('levels below the threshold are dropped; record() is not', () => {
    const { log, lines } = capture({ timestamps: true }, 'error');
    log.info('hidden');
    log.debug('hidden');
    log.record('stats', { a: 1 });
    expect(lines).toEqual(['2024-03-01T12:34:56.789Z usernet: stats {"a":1}\n']);
  });
});

describe('json format', () => {
  it('one object per line: time, level, msg first, then the fields', () => {
    const { log, lines } = capture({ format: 'json' }, 'debug');
    log.debug('x "quoted"\nnewline', { n: 1 });
    log.error('boom');
    expect(lines).toHaveLength(2);
    for (const l of lines) {
      expect(l.endsWith('\n')).toBe(true);
      expect(l.slice(0, -1)).not.toContain('\n');
    }
    const a = JSON.parse(lines[0]);
    expect(Object.keys(a)).toEqual(['time', 'level', 'msg', 'n']);
    expect(a).toEqual({ time: '2024-03-01T12:34:56.789Z', level: 'debug', msg: 'x "quoted"\nnewline', n: 1 });
    expect(JSON.parse(lines[1])).toEqual({ time: '2024-03-01T12:34:56.789Z', level: 'error', msg: 'boom' });
  });

  it('record(): the data spread into the object, msg naming it', () => {
    const { log, lines } = capture({ format: 'json' }, 'error');
    log.record('stats', { uptimeSeconds: 3, nat: { tcp: { active: 0 } } });
    expect(JSON.parse(lines[0])).toEqual({ time: '2024-03-01T12:34:56.789Z', level: 'info', msg: 'stats', uptimeSeconds: 3, nat: { tcp: { active: 0 } } });
  });
});

describe('log file', () => {
  let dir = '';
  afterEach(() => {
    if (dir !== '') rmSync(dir, { recursive: true, force: true });
    dir = '';
  });

  it('appends, keeps what was there, and names itself as the destination', () => {
    dir = mkdtempSync(join(tmpdir(), 'i19o-log-'));
    const file = join(dir, 'usernet.log');
    openLogger('info', 'text', file).info('one');
    const log = openLogger('info', 'json', file);
    expect(log.destination).toBe(file);
    log.info('two');
    log.debug('hidden');
    const lines = readFileSync(file, 'utf8').trimEnd().split('\n');
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z usernet: info: one$/);
    expect(JSON.parse(lines[1])).toMatchObject({ level: 'info', msg: 'two' });
  });

  it('slirp4netns front end: USERNET_LOG_FORMAT and USERNET_LOG_FILE', () => {
    dir = mkdtempSync(join(tmpdir(), 'i19o-log-'));
    const file = join(dir, 'slirp.log');
    const log = slirpLogger({ USERNET_LOG_LEVEL: 'info', USERNET_LOG_FORMAT: 'json', USERNET_LOG_FILE: file });
    expect(log.level).toBe('info');
    expect(log.format).toBe('json');
    log.info('hello');
    expect(JSON.parse(readFileSync(file, 'utf8'))).toMatchObject({ level: 'info', msg: 'hello' });
  });
});

describe('options', () => {
  it('defaults: text on stderr', () => {
    expect(observabilityOptions({})).toMatchObject({ logFormat: 'text', logFile: null });
  });

  it('refuses an unknown format and an empty file name', () => {
    expect(() => observabilityOptions({ 'log-format': 'xml' })).toThrow(ConfigError);
    expect(() => observabilityOptions({ 'log-format': 'xml' })).toThrow(/text or json/);
    expect(() => observabilityOptions({ 'log-file': '' })).toThrow(/file name/);
  });
});
