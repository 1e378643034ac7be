/**
 * The `usernet` executable: parses the command line, runs a front end, maps
 * failures to exit codes (2: usage or configuration, 1: runtime error).
 */
import { basename } from 'node:path';
import { ConfigError, UsernetError } from '../errors.js';
import { frontEndLogger, reportFatal } from '../observability-options.js';
import { parseCommandLine, type Command } from '../options.js';
import { checkHelp, mainHelp, runHelp } from './help.js';
import { packageVersion as version, versionLines } from './version.js';

/** Handled by src/daemon/cli.ts, loaded only for them. */
const DAEMON_COMMANDS = new Set(['daemon', 'attach', 'detach', 'ls', 'publish', 'unpublish', 'port', 'stats', 'docker', 'docker-plugin']);

export const EXIT_RUNTIME = 1;
export const EXIT_USAGE = 2;

/** Invoked as `slirp4netns` (a link or copy named so), or `usernet slirp4netns ...`. */
function slirpArgs(argv: string[]): { args: string[]; prog: string } | null {
  const self = basename(process.argv[1] ?? '').replace(/\.[cm]?js$/, '');
  if (self === 'slirp4netns') return { args: argv, prog: 'slirp4netns' };
  if (argv[0] === 'slirp4netns') return { args: argv.slice(1), prog: 'usernet slirp4netns' };
  return null;
}

async function main(argv: string[]): Promise<number> {
  const slirp = slirpArgs(argv);
  if (slirp !== null) {
    const { runSlirp4netns } = await import('../slirp4netns/main.js');
    return await runSlirp4netns(slirp.args, slirp.prog, version());
  }
  if (argv[0] === 'cni') {
    // The CNI plugin (bin/usernet-cni): the protocol is in the environment and on stdin.
    const { runCni } = await import('../daemon/cni.js');
    const stdin = await new Promise<string>((resolve) => {
      let text = '';
      process.stdin.setEncoding('utf8').on('data', (d: string) => (text += d)).on('end', () => resolve(text));
    });
    return await runCni(process.env, stdin, (s) => process.stdout.write(`${s}\n`));
  }
  if (argv[0] !== undefined && DAEMON_COMMANDS.has(argv[0])) {
    const { runDaemonCommand } = await import('../daemon/cli.js');
    try {
      return await runDaemonCommand(argv);
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      process.stderr.write(`usernet: ${err.message}\n`);
      return EXIT_USAGE;
    }
  }
  let cmd: Command;
  try {
    cmd = parseCommandLine(argv);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`usernet: ${err.message}\n`);
      return EXIT_USAGE;
    }
    throw err;
  }
  switch (cmd.kind) {
    case 'help':
      process.stdout.write(cmd.topic === 'run' ? runHelp : cmd.topic === 'check' ? checkHelp : mainHelp);
      return 0;
    case 'version':
      process.stdout.write(`${versionLines().join('\n')}\n`);
      return 0;
    case 'check': {
      const { checkCommand } = await import('../check/check.js');
      return await checkCommand(cmd, (s) => process.stdout.write(s));
    }
    case 'main': {
      const log = frontEndLogger(cmd.options.logLevel, cmd.options.observe);
      const { serveTaps } = await import('../serve.js');
      return await serveTaps(cmd, log);
    }
    case 'run': {
      const log = frontEndLogger(cmd.options.logLevel, cmd.options.observe);
      const { runInNamespace } = await import('../run.js');
      return await runInNamespace(cmd, log);
    }
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    if (err instanceof ConfigError) {
      process.stderr.write(`usernet: ${err.message}\n`);
      process.exit(EXIT_USAGE);
    }
    const hint = err instanceof UsernetError && 'hint' in err && err.hint ? `\nhint: ${String(err.hint)}` : '';
    reportFatal(`${(err as Error).message ?? String(err)}${hint}`);
    if (process.env.USERNET_DEBUG) process.stderr.write(`${(err as Error).stack}\n`);
    process.exit(EXIT_RUNTIME);
  },
);
