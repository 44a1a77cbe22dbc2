/**
 * `lazy-als status [--socket PATH] [--config FILE]` — ask the running daemon for its state over
 * the control socket and print it as JSON. Exit 1 (one line) when no daemon answers.
 * `controlCommand` is shared with `gc`: find the socket (flag, config file, default), call, print.
 */
import { access } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { DEFAULT_CONFIG_FILE, DEFAULTS, loadConfigFile } from '../../daemon/config.js';
import { controlRequest } from '../../daemon/control-socket.js';
import { ConfigError, DaemonError } from '../../daemon/errors.js';
import { UsageError, type CommandIo } from '../main.js';
export async function controlCommand(name: string, method: 'GET' | 'POST', url: string, argv: string[], io: CommandIo): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({ args: argv, strict: true, options: { socket: { type: 'string' }, config: { type: 'string' }, help: { type: 'boolean', short: 'h' } } }));
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  if (values.help) {
    io.stdout.write(`usage: lazy-als ${name} [--socket PATH] [--config FILE]\n`);
    return 0;
  }
  let socket = values.socket;
  if (socket === undefined) {
    const file = values.config ?? ((await access(DEFAULT_CONFIG_FILE).then(() => true, () => false)) ? DEFAULT_CONFIG_FILE : undefined);
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
  const r = await controlRequest(socket, method, url);
  if (r.status < 200 || r.status >= 300) throw new DaemonError('CONTROL_SOCKET', `daemon answered ${r.status}: ${JSON.stringify(r.body)}`);
  io.stdout.write(JSON.stringify(r.body, null, 2) + '\n');
  return 0;
}

export function run(argv: string[], io: CommandIo): Promise<number> {
  return controlCommand('status', 'GET', '/status', argv, io);
}
