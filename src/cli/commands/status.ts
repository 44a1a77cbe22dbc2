/**
 * `lazy-als status [--json] [--socket PATH] [--config FILE]` — ask the running daemon for its state
 * over the control socket: a table for people (layers with image, key kind, size, fetched %, in
 * use, last access; cache usage/limit and hit rate; refused layers), or the JSON itself (`--json`).
 * Exit 1 (one line) when no daemon answers.
 * `controlCommand` is shared with `gc`: find the socket (flag, config file, default), call, print.
 */
import { access } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { DEFAULT_CONFIG_FILE, DEFAULTS, loadConfigFile } from '../../daemon/config.js';
import { controlRequest } from '../../daemon/control-socket.js';
import { ConfigError, DaemonError } from '../../daemon/errors.js';
import { UsageError, type CommandIo } from '../main.js';
import { renderStatus } from '../status-table.js';

export interface ControlCommandOptions {
  /** Extra boolean flags the command accepts (besides --json, --socket, --config). */
  readonly flags?: readonly string[];
  /** Request body from the parsed flags (POST). */
  readonly body?: (flags: Record<string, boolean>) => unknown;
  /** Human rendering of the answer (default: indented JSON). */
  readonly render?: (body: unknown) => string;
  readonly usage?: string;
}

export async function controlCommand(
  name: string,
  method: 'GET' | 'POST',
  url: string,
  argv: string[],
  io: CommandIo,
  o: ControlCommandOptions = {},
): Promise<number> {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      options: {
        socket: { type: 'string' },
        config: { type: 'string' },
        json: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
        ...Object.fromEntries((o.flags ?? []).map((f) => [f, { type: 'boolean' as const }])),
      },
    }));
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  if (values['help']) {
    io.stdout.write(o.usage ?? `usage: lazy-als ${name} [--json] [--socket PATH] [--config FILE]\n`);
    return 0;
  }
  let socket = values['socket'] as string | undefined;
  if (socket === undefined) {
    const given = values['config'] as string | undefined;
    const file = given ?? ((await access(DEFAULT_CONFIG_FILE).then(() => true, () => false)) ? DEFAULT_CONFIG_FILE : undefined);
    try {
      socket = file !== undefined ? (await loadConfigFile(file)).socketPath : DEFAULTS.socketPath;
    } catch (e) {
      if (e instanceof ConfigError) {
        io.stderr.write(`lazy-als ${name}: ${e.message}\n`);
        return 2;
      }
      throw e;
    }
  }
  const flags = Object.fromEntries((o.flags ?? []).map((f) => [f, values[f] === true]));
  const r = await controlRequest(socket, method, url, o.body?.(flags));
  if (r.status < 200 || r.status >= 300) throw new DaemonError('CONTROL_SOCKET', `daemon answered ${r.status}: ${JSON.stringify(r.body)}`);
  io.stdout.write(values['json'] || !o.render ? JSON.stringify(r.body, null, 2) + '\n' : o.render(r.body));
  return 0;
}

export function run(argv: string[], io: CommandIo): Promise<number> {
  return controlCommand('status', 'GET', '/status', argv, io, { render: (b) => renderStatus(b) });
}
