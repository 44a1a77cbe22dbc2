/**
 * `lazy-als <command> [args]`: dispatch to ./commands/<command>.js, each exporting
 * `run(argv, io): Promise<number>`. Exit codes: 0 ok, 1 failure (one line on stderr: the error's
 * message, which for LazyAlsError includes its context), 2 usage error.
 */
import { LazyAlsError } from '../core/errors.js';

export interface CommandIo {
  readonly stdout: { write(s: string): unknown };
  readonly stderr: { write(s: string): unknown };
}

export interface CommandModule {
  run(argv: string[], io: CommandIo): Promise<number>;
}

/** Exit code 2: the command line is wrong (commands throw it for bad options). */
export class UsageError extends Error {}

const COMMANDS: Readonly<Record<string, string>> = {
  serve: 'serve [--config FILE] [options] [MOUNTPOINT]                       run the store (foreground)',
  status: 'status [--json] [--socket PATH]                                     layers, fetched %, cache, hit rate, refused layers',
  gc: 'gc [--all] [--json] [--socket PATH]                                 evict cached chunks to the limit (--all: all not in use)',
  purge: 'purge [--json] [--socket PATH]                                      = gc --all: empty the cache of layers not in use',
  doctor: 'doctor [--config FILE] [--json]                                     check FUSE, fuse.conf, storage.conf, state dir; say what to fix',
  resolve: 'resolve REF [--json] [--dfs ROOT] [--no-registry]                  what the store would serve for REF',
  export: 'export REF DIR                                                      copy an image into an OCI-layout tree',
  inspect: 'inspect BLOB [--toc-digest D] [--diff-id D] [--media-type T] [--json]   verify and list a layer blob',
  extract: 'extract BLOB DIR [--toc-digest D] [--diff-id D] [--media-type T]      write the verified overlay tree into DIR',
};

export function usage(): string {
  const lines = Object.values(COMMANDS).map((c) => `  lazy-als ${c}`);
  return ['usage: lazy-als <command> [options]', '', 'commands:', ...lines, '', 'lazy-als <command> --help for details.', ''].join('\n');
}

/** One line describing an error for stderr. */
export function describeError(e: unknown): string {
  if (e instanceof LazyAlsError) return `${e.code}: ${e.message}`.replace(/\s*\n\s*/g, ' ');
  if (e instanceof Error) return (e.message || e.name).replace(/\s*\n\s*/g, ' ');
  return String(e);
}

export async function main(argv: string[], io: CommandIo = { stdout: process.stdout, stderr: process.stderr }): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd === undefined || cmd === '--help' || cmd === '-h' || cmd === 'help') {
    (cmd === undefined ? io.stderr : io.stdout).write(usage());
    return cmd === undefined ? 2 : 0;
  }
  if (!/^[a-z][a-z0-9-]*$/.test(cmd)) {
    io.stderr.write(`lazy-als: unknown command ${JSON.stringify(cmd)}\n${usage()}`);
    return 2;
  }
  let mod: CommandModule;
  try {
    mod = (await import(`./commands/${cmd}.js`)) as CommandModule;
  } catch (e) {
    const code = (e as { code?: string }).code;
    if (code === 'ERR_MODULE_NOT_FOUND' && String((e as Error).message).includes(`commands/${cmd}.js`)) {
      io.stderr.write(`lazy-als: unknown command ${JSON.stringify(cmd)}\n${usage()}`);
      return 2;
    }
    throw e;
  }
  try {
    return await mod.run(rest, io);
  } catch (e) {
    if (e instanceof UsageError) {
      io.stderr.write(`lazy-als ${cmd}: ${e.message}\n`);
      return 2;
    }
    io.stderr.write(`lazy-als ${cmd}: ${describeError(e)}\n`);
    return 1;
  }
}
