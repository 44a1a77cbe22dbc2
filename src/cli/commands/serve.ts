/**
 * `lazy-als serve [options] [MOUNTPOINT]` — run the store daemon in the foreground.
 *
 * Settings: embedded defaults ← config file ← flags. The config file is --config FILE, else
 * /etc/lazy-als/config.toml when it exists (TOML; JSON when the name ends in .json); see
 * contrib/lazy-als.conf for every key. An invalid file or flag prints one line and exits 2.
 * SIGTERM/SIGINT unmount and exit 0.
 */
import { access } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { createLogger, type LogLineFormat } from '../../core/log.js';
import { applySetting, DEFAULT_CONFIG_FILE, DEFAULTS, loadConfigFile, type DaemonConfig, type LogFormat } from '../../daemon/config.js';
import { ConfigError } from '../../daemon/errors.js';
import type { ProviderFactory } from '../../daemon/provider-factory.js';
import { serve, type ReadyInfo } from '../../daemon/serve.js';
import type { CommandIo } from '../main.js';

const HELP = `usage: lazy-als serve [options] [MOUNTPOINT]
Mount the Additional Layer Store and serve it until SIGTERM/SIGINT.
  --config FILE            config file (TOML, or JSON if *.json; default ${DEFAULT_CONFIG_FILE} if present)
  --state-dir DIR          state and cache directory (default ${DEFAULTS.stateDir})
  --socket PATH            control socket (default ${DEFAULTS.socketPath})
  --log-level L            debug|info|warn|error|silent (default ${DEFAULTS.logLevel})
  --cache-size BYTES       local cache bound, e.g. 20GiB (default ${DEFAULTS.cacheSizeBytes / 1024 ** 3}GiB)
  --registries-conf FILE   registries.conf to use (default: the system's)
  --auth-file FILE         auth.json to use (default: the usual podman locations)
  --dfs ROOT               OCI-layout root on a distributed filesystem, tried before registries (repeatable)
  --registry BOOL          ask registries at all (false: dfs roots and the state dir only; default ${DEFAULTS.registry})
  --background-fetch BOOL  fetch whole layers in the background after the prefetch (default ${DEFAULTS.backgroundFetch})
  --era-a-toc-layers M     verify|trust: eStargz/zstd:chunked layers podman <= 5.0 asks for by blob digest are
                           fetched whole and verified first (verify), or served lazily with the image config's
                           diff_id unchecked (trust: only if every image publisher is trusted; default ${DEFAULTS.eraATocLayers})
  --max-index-entries N    platform manifests fetched per image index at most, host's first (default ${DEFAULTS.maxIndexEntries})
  --backend B              FUSE backend: native (C, libfuse3) or fuse-native (default native where built)
  --lookup-timeout-ms N    deadline for lookups that resolve a layer (default ${DEFAULTS.fuse.lookupTimeoutMs})
  --read-timeout-ms N      deadline for reads (default ${DEFAULTS.fuse.readTimeoutMs})
  --op-timeout-ms N        deadline for other operations (default ${DEFAULTS.fuse.opTimeoutMs})
  --entry-timeout SEC      kernel entry cache (default ${DEFAULTS.fuse.entryTimeoutSec})
  --attr-timeout SEC       kernel attribute cache (default ${DEFAULTS.fuse.attrTimeoutSec})
  --allow-other BOOL       let other users traverse the mount (default ${DEFAULTS.fuse.allowOther}; true needs user_allow_other when not root)
  --suid BOOL              honour setuid bits in layers when root (default ${DEFAULTS.fuse.suid})
  --max-layers N           layers the filesystem keeps resolved (default ${DEFAULTS.fuse.maxLayers})
  --resolve-uids IDS       non-root uids that may make the store resolve layers, e.g. 1000,1001 (default none)
  --resolve-gids IDS       gids whose members may make the store resolve layers (default none)
  --id-map M               auto|none|subids: show layer ids as rootless podman maps them (subids; auto = when not root)
  --fuse-debug BOOL        libfuse debug output
  --metrics-address ADDR   serve Prometheus metrics at http://ADDR/metrics (HOST:PORT, or PORT for loopback; default off)
  --log-format F           auto|text|json (default auto: text on a terminal, JSON otherwise, e.g. journald)
  --credentials-ttl SEC    keep auth-helper credentials (state dir, 0600) this long unless their token expires
                           sooner (default ${DEFAULTS.credentialsTtlMs / 1000})
  --max-entries N          entries per layer before it is refused ([limits] table; docs/robustness.md)
  --max-toc-bytes SIZE, --max-chunk-bytes SIZE, --max-compressed-span-bytes SIZE, --max-path-bytes N,
  --max-xattr-bytes SIZE, --max-layer-xattr-bytes SIZE, --max-tar-header-ext-bytes SIZE,
  --max-index-heap-bytes SIZE
                           the other per-layer bounds (same [limits] keys)
MOUNTPOINT defaults to ${DEFAULTS.mountpoint}; storage.conf: additionallayerstores = ["<MOUNTPOINT>:ref"].
`;

/** Flag → config key (the same keys as the file; `fuse.` = the [fuse] table). */
const FLAG_KEYS: Readonly<Record<string, string>> = {
  'state-dir': 'state_dir',
  socket: 'socket',
  'log-level': 'log_level',
  'cache-size': 'cache_size',
  'registries-conf': 'registries_conf',
  'auth-file': 'auth_file',
  registry: 'registry',
  'background-fetch': 'background_fetch',
  'era-a-toc-layers': 'era_a_toc_layers',
  'max-index-entries': 'max_index_entries',
  backend: 'fuse.backend',
  'lookup-timeout-ms': 'fuse.lookup_timeout_ms',
  'read-timeout-ms': 'fuse.read_timeout_ms',
  'op-timeout-ms': 'fuse.op_timeout_ms',
  'entry-timeout': 'fuse.entry_timeout_sec',
  'attr-timeout': 'fuse.attr_timeout_sec',
  'allow-other': 'fuse.allow_other',
  suid: 'fuse.suid',
  'max-layers': 'fuse.max_layers',
  'resolve-uids': 'fuse.resolve_uids',
  'resolve-gids': 'fuse.resolve_gids',
  'id-map': 'fuse.id_map',
  'fuse-debug': 'fuse.debug',
  'metrics-address': 'metrics_address',
  'log-format': 'log_format',
  'credentials-ttl': 'credentials_ttl_sec',
  'max-entries': 'limits.max_entries',
  'max-toc-bytes': 'limits.max_toc_bytes',
  'max-chunk-bytes': 'limits.max_chunk_bytes',
  'max-compressed-span-bytes': 'limits.max_compressed_span_bytes',
  'max-path-bytes': 'limits.max_path_bytes',
  'max-xattr-bytes': 'limits.max_xattr_bytes',
  'max-layer-xattr-bytes': 'limits.max_layer_xattr_bytes',
  'max-tar-header-ext-bytes': 'limits.max_tar_header_ext_bytes',
  'max-index-heap-bytes': 'limits.max_index_heap_bytes',
};

/** Parse serve's argv into a config; throws ConfigError for anything wrong. */
export async function configFromArgs(argv: string[]): Promise<DaemonConfig | 'help'> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        help: { type: 'boolean', short: 'h' },
        config: { type: 'string' },
        dfs: { type: 'string', multiple: true },
        ...Object.fromEntries(Object.keys(FLAG_KEYS).map((k) => [k, { type: 'string' as const }])),
      },
    });
  } catch (e) {
    throw new ConfigError((e as Error).message);
  }
  const { values, positionals } = parsed;
  if (values.help) return 'help';
  if (positionals.length > 1) throw new ConfigError(`expected at most one MOUNTPOINT, got ${positionals.length}`);
  let config: DaemonConfig = DEFAULTS;
  const file = values.config as string | undefined;
  if (file !== undefined) config = await loadConfigFile(file);
  else if (await access(DEFAULT_CONFIG_FILE).then(() => true, () => false)) config = await loadConfigFile(DEFAULT_CONFIG_FILE);
  const c = { ...config, dfsRoots: [...config.dfsRoots], fuse: { ...config.fuse }, limits: { ...config.limits } };
  for (const [flag, key] of Object.entries(FLAG_KEYS)) {
    const v = (values as Record<string, unknown>)[flag];
    if (v !== undefined) applySetting(c, key, v, `--${flag}`);
  }
  if (values.dfs !== undefined) applySetting(c, 'dfs', values.dfs, '--dfs');
  if (positionals[0] !== undefined) applySetting(c, 'mountpoint', positionals[0], 'MOUNTPOINT');
  return c;
}

export async function runServe(argv: string[], io: CommandIo, deps: { buildProvider?: ProviderFactory } = {}): Promise<number> {
  let config: DaemonConfig | 'help';
  try {
    config = await configFromArgs(argv);
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    io.stderr.write(`lazy-als serve: ${e.message}\n`);
    return 2;
  }
  if (config === 'help') {
    io.stdout.write(HELP);
    return 0;
  }
  const logger = createLogger(config.logLevel, process.stderr, { pid: process.pid }, lineFormat(config.logFormat));
  return serve(config, {
    logger,
    onReady: (r) => io.stdout.write(readyLine(r) + '\n'),
    ...(deps.buildProvider ? { buildProvider: deps.buildProvider } : {}),
  });
}

/** auto: text for a person at a terminal; JSON under journald (JOURNAL_STREAM) or any pipe/file. */
export function lineFormat(f: LogFormat, stderr: { isTTY?: boolean } = process.stderr, env: NodeJS.ProcessEnv = process.env): LogLineFormat {
  if (f !== 'auto') return f;
  return stderr.isTTY === true && env['JOURNAL_STREAM'] === undefined ? 'text' : 'json';
}

/** The one line `serve` prints on stdout once the store answers. */
export function readyLine(r: ReadyInfo): string {
  const extra = r.metrics !== undefined ? `, metrics http://${r.metrics}/metrics` : '';
  return `lazy-als: ready, serving ${r.mountpoint} (state ${r.stateDir}, backend ${r.backend}, control ${r.socket}${extra})`;
}

export async function run(argv: string[], io: CommandIo): Promise<number> {
  const code = await runServe(argv, io);
  // fuse-native leaves per-thread async handles behind after unmount; they must not keep a
  // stopped daemon alive (the unit's stop would time out). Exit once the CLI has had its turn.
  setTimeout(() => process.exit(code), 1000).unref();
  return code;
}
