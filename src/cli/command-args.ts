/**
 * Shared argv handling of the registry commands (resolve, export): parse with node:util parseArgs,
 * print usage for --help (exit 0) or for a malformed command line (exit 2). Returns the parsed values
 * or the exit code to return.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';

type Options = NonNullable<ParseArgsConfig['options']>;

export interface CommandStreams {
  readonly stdout: NodeJS.WritableStream;
  readonly stderr: NodeJS.WritableStream;
}

/** Flags every registry command accepts. */
export const REGISTRY_FLAGS = {
  'registries-conf': { type: 'string' },
  'auth-file': { type: 'string' },
  'log-level': { type: 'string', default: 'warn' },
  help: { type: 'boolean', short: 'h' },
} as const satisfies Options;

export function parseCommand<O extends Options>(
  argv: string[],
  io: CommandStreams,
  usage: string,
  options: O,
  positionals: number,
): { values: ReturnType<typeof parseArgs<{ args: string[]; allowPositionals: true; options: O }>>['values']; positionals: string[] } | number {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, allowPositionals: true, options });
  } catch (e) {
    io.stderr.write(`${(e as Error).message}\n${usage}`);
    return 2;
  }
  if ((parsed.values as { help?: boolean }).help) {
    io.stdout.write(usage);
    return 0;
  }
  if (parsed.positionals.length !== positionals) {
    io.stderr.write(usage);
    return 2;
  }
  return parsed;
}
