/**
 * `lazy-als doctor [--config FILE] [--storage-conf FILE] [--registries-conf FILE] [--json]` —
 * check kernel FUSE, /etc/fuse.conf, storage.conf wiring, the auth helper in registries.conf and
 * the state dir; print one line per check with what to fix. Exit 0 when nothing fails (warnings
 * allowed), 1 when something will stop the store from working, 2 for a bad command line/config.
 */
import { access } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { DEFAULT_CONFIG_FILE, DEFAULTS, loadConfigFile, type DaemonConfig } from '../../daemon/config.js';
import { runDoctor, type CheckResult } from '../../daemon/doctor.js';
import { ConfigError } from '../../daemon/errors.js';
import { UsageError, type CommandIo } from '../main.js';

const USAGE = `usage: lazy-als doctor [--config FILE] [--storage-conf FILE] [--registries-conf FILE] [--json]
Checks kernel FUSE, /etc/fuse.conf, storage.conf (additionallayerstores), the auth helper in
registries.conf, the state dir and its free space. Exit 0: nothing fails; 1: something to fix.
`;

export function renderChecks(results: readonly CheckResult[]): string {
  const w = Math.max(...results.map((r) => r.check.length));
  const lines: string[] = [];
  for (const r of results) {
    lines.push(`${r.level === 'ok' ? 'ok  ' : r.level.toUpperCase()}  ${r.check.padEnd(w)}  ${r.message}`);
    if (r.fix && r.level !== 'ok') lines.push(`${' '.repeat(6 + w)}  fix: ${r.fix}`);
  }
  const fails = results.filter((r) => r.level === 'fail').length;
  const warns = results.filter((r) => r.level === 'warn').length;
  lines.push(
    '',
    fails > 0 ? `${fails} problem(s) to fix${warns ? `, ${warns} warning(s)` : ''}` : warns > 0 ? `no problems, ${warns} warning(s)` : 'no problems',
  );
  return lines.join('\n') + '\n';
}

export async function run(argv: string[], io: CommandIo): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      options: {
        config: { type: 'string' },
        'storage-conf': { type: 'string' },
        'registries-conf': { type: 'string' },
        json: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  if (values.help) {
    io.stdout.write(USAGE);
    return 0;
  }
  let config: DaemonConfig = DEFAULTS;
  try {
    const file = values.config ?? ((await access(DEFAULT_CONFIG_FILE).then(() => true, () => false)) ? DEFAULT_CONFIG_FILE : undefined);
    if (file !== undefined) config = await loadConfigFile(file);
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    io.stderr.write(`lazy-als doctor: ${e.message}\n`);
    return 2;
  }
  const results = await runDoctor({
    config,
    ...(values['storage-conf'] !== undefined ? { storageConf: values['storage-conf'] } : {}),
    ...(values['registries-conf'] !== undefined ? { registriesConf: values['registries-conf'] } : {}),
  });
  io.stdout.write(values.json ? JSON.stringify(results, null, 2) + '\n' : renderChecks(results));
  return results.some((r) => r.level === 'fail') ? 1 : 0;
}
