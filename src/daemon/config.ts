/**
 * Daemon configuration: embedded defaults ← config file (TOML, or JSON when the name ends in
 * .json) ← command-line flags. Every file key has a flag. Validation is strict (unknown keys,
 * wrong types and bad values are errors) so a typo never silently falls back to a default;
 * the CLI prints the one-line ConfigError and exits 2.
 */
import { readFile } from 'node:fs/promises';
import { parse as parseToml } from 'smol-toml';
import { DEFAULT_LIMITS, type Limits } from '../core/limits.js';
import type { LogLevel } from '../core/log.js';
import { ERA_A_TOC_LAYERS, type EraATocLayers } from '../catalog/catalog.js';
import { BACKENDS, isBackendName, type AlsMountOptions, type BackendName } from '../fuse/mount-als.js';
import { DEFAULT_MAX_INDEX_ENTRIES } from '../sources/image-resolver.js';
import { ConfigError } from './errors.js';
import { defaultConfigFile, isRootless, SYSTEM_PATHS, userPaths } from './paths.js';


export interface FuseConfig {
  /**
   * native: the C libfuse3 server (native/); fuse-native: the portable libfuse 2 binding.
   * undefined: $LAZY_ALS_BACKEND, else native where its addon is built, else fuse-native (logged).
   */
  readonly backend: BackendName | undefined;
  /** Deadline for lookups (getattr/open/create): may resolve a layer from a registry. */
  readonly lookupTimeoutMs: number;
  /** Deadline for reads: may fetch chunks from a registry. */
  readonly readTimeoutMs: number;
  /** Deadline for everything else. */
  readonly opTimeoutMs: number;
  readonly entryTimeoutSec: number;
  readonly attrTimeoutSec: number;
  readonly allowOther: boolean;
  readonly suid: boolean;
  /** Layers kept resolved by the filesystem itself. */
  readonly maxLayers: number;
  /**
   * Non-root uids / gids that may make the store resolve layers (look up `<key>/diff|info|blob`).
   * Root and the daemon's own uid always may; nobody else by default (podman and CRI-O look up as
   * root; containers read through overlayfs with the mounter's credentials).
   */
  readonly resolveUids: readonly number[];
  readonly resolveGids: readonly number[];
  /**
   * How layer ids are shown: `subids` = as rootless podman's namespace maps them (layer 0 → the
   * daemon's user, n → the n-th id of its /etc/subuid, /etc/subgid ranges), `none` = as in the tar.
   * `auto`: `subids` when the daemon is not root, else `none` (docs/rootless.md).
   */
  readonly idMap: IdMapMode;
  readonly debug: boolean;
}

export type IdMapMode = 'auto' | 'none' | 'subids';

export interface DaemonConfig {
  readonly stateDir: string;
  readonly mountpoint: string;
  readonly socketPath: string;
  readonly logLevel: LogLevel;
  readonly cacheSizeBytes: number;
  readonly registriesConf: string | undefined;
  readonly authFile: string | undefined;
  readonly dfsRoots: readonly string[];
  /** Ask registries (false: serve only from dfs roots and the state dir; no network at all). */
  readonly registry: boolean;
  /** After the landmark prefetch, fetch whole layers in the background (yielding to demand reads). */
  readonly backgroundFetch: boolean;
  /**
   * TOC layers (eStargz, zstd:chunked) looked up by blob digest (podman ≤ 5.0): `verify` = fetched
   * whole and checked against blob digest and diff_id before served (like plain layers); `trust` =
   * lazy, with the config's diff_id published unchecked (one hostile image can replace another
   * image's layer in c/storage: docs/security.md). TOC-digest lookups (podman ≥ 5.1) are lazy either way.
   */
  readonly eraATocLayers: EraATocLayers;
  /** Platform manifests fetched per image index at most (the host's platform first). */
  readonly maxIndexEntries: number;
  readonly fuse: FuseConfig;
  // --- operations (ops) ---
  /** Prometheus endpoint `host:port` (undefined = off). A bare port binds loopback only. */
  readonly metricsAddress: MetricsAddress | undefined;
  /** Log lines: `text` for people, `json` for journald/scripts, `auto` = text on a terminal, else JSON. */
  readonly logFormat: LogFormat;
  /** How long credentials from the auth helper are kept (on disk, across restarts) when their token has no expiry. */
  readonly credentialsTtlMs: number;
  /** Bounds on what one layer may cost (the [limits] table; docs/robustness.md says why each default). */
  readonly limits: Limits;
  /** The file the settings came from, if any (for status). */
  readonly configFile: string | undefined;
}

export interface MetricsAddress {
  readonly host: string;
  /** 0 = any free port (the bound address is logged and printed in the ready line). */
  readonly port: number;
}

export type LogFormat = 'auto' | 'text' | 'json';

export const DEFAULT_CONFIG_FILE = defaultConfigFile();

const SYSTEM_DEFAULTS: DaemonConfig = Object.freeze({
  stateDir: SYSTEM_PATHS.stateDir,
  mountpoint: SYSTEM_PATHS.mountpoint,
  socketPath: SYSTEM_PATHS.socketPath,
  logLevel: 'warn',
  cacheSizeBytes: 10 * 1024 ** 3,
  registriesConf: undefined,
  authFile: undefined,
  dfsRoots: [],
  registry: true,
  backgroundFetch: false,
  eraATocLayers: 'verify',
  maxIndexEntries: DEFAULT_MAX_INDEX_ENTRIES,
  fuse: Object.freeze({
    // Chosen at mount (mount-als.ts defaultBackend): $LAZY_ALS_BACKEND, else native where built.
    backend: undefined,
    lookupTimeoutMs: 60_000,
    readTimeoutMs: 120_000,
    opTimeoutMs: 30_000,
    entryTimeoutSec: 60,
    attrTimeoutSec: 60,
    allowOther: true,
    // Off: a user allowed to resolve could fetch any image holding a setuid-root binary and run it
    // from the mount (audit H4). Containers do not need it: overlayfs decides setuid for them.
    suid: false,
    maxLayers: 512,
    resolveUids: Object.freeze([]) as readonly number[],
    resolveGids: Object.freeze([]) as readonly number[],
    idMap: 'auto' as IdMapMode,
    debug: false,
  }),
  metricsAddress: undefined,
  logFormat: 'auto',
  credentialsTtlMs: 12 * 3600 * 1000,
  limits: DEFAULT_LIMITS,
  configFile: undefined,
});

/**
 * The embedded defaults for this process. Rootless: state, mount and socket under the user's XDG
 * directories, and no `allow_other` (fusermount3 refuses it without `user_allow_other` in
 * /etc/fuse.conf, and rootless podman reaches the mount as its owner).
 */
function defaultsFor(env: NodeJS.ProcessEnv, uid: number): DaemonConfig {
  if (!isRootless(env, uid)) return SYSTEM_DEFAULTS;
  const p = userPaths(env);
  return Object.freeze({
    ...SYSTEM_DEFAULTS,
    stateDir: p.stateDir,
    mountpoint: p.mountpoint,
    socketPath: p.socketPath,
    fuse: Object.freeze({ ...SYSTEM_DEFAULTS.fuse, allowOther: false }),
  });
}

export const DEFAULTS: DaemonConfig = defaultsFor(process.env, process.getuid?.() ?? 0);

/** The configured settings of the FUSE mount (what mountAls takes beyond the mountpoint, provider and logger). */
export type AlsMountSettings = Pick<
  AlsMountOptions,
  'backend' | 'timeouts' | 'entryTimeoutSec' | 'attrTimeoutSec' | 'allowOther' | 'suid' | 'maxLayers' | 'debug'
>;

/** FuseConfig → mount settings. `suid` only as root (a user mount cannot honour it). */
export function alsMountSettings(f: FuseConfig, uid: number = process.getuid?.() ?? 0): AlsMountSettings {
  return {
    ...(f.backend !== undefined ? { backend: f.backend } : {}),
    timeouts: { lookupMs: f.lookupTimeoutMs, readMs: f.readTimeoutMs, defaultMs: f.opTimeoutMs },
    entryTimeoutSec: f.entryTimeoutSec,
    attrTimeoutSec: f.attrTimeoutSec,
    allowOther: f.allowOther,
    suid: f.suid && uid === 0,
    maxLayers: f.maxLayers,
    debug: f.debug,
  };
}

const LEVELS: readonly LogLevel[] = ['debug', 'info', 'warn', 'error', 'silent'];
const SIZE_RE = /^(\d+(?:\.\d+)?)\s*(B|KiB|MiB|GiB|TiB|K|M|G|T)?$/i;
const UNIT: Record<string, number> = { b: 1, k: 1024, kib: 1024, m: 1024 ** 2, mib: 1024 ** 2, g: 1024 ** 3, gib: 1024 ** 3, t: 1024 ** 4, tib: 1024 ** 4 };

/** "10GiB", "512M", "1048576" or a number → bytes. */
export function parseSize(v: unknown, what: string): number {
  if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) return v;
  if (typeof v === 'bigint' && v >= 0n && v <= BigInt(Number.MAX_SAFE_INTEGER)) return Number(v);
  if (typeof v === 'string') {
    const m = SIZE_RE.exec(v.trim());
    if (m) return Math.floor(Number(m[1]) * UNIT[(m[2] ?? 'b').toLowerCase()]!);
  }
  throw new ConfigError(`${what}: expected a size like 10GiB or a byte count, got ${JSON.stringify(String(v))}`);
}

type Raw = Record<string, unknown>;
type Mutable<T> = { -readonly [K in keyof T]: T[K] extends object ? (T[K] extends readonly unknown[] ? T[K] : Mutable<T[K]>) : T[K] };

const str = (v: unknown, what: string): string => {
  if (typeof v !== 'string' || v === '') throw new ConfigError(`${what}: expected a non-empty string`);
  return v;
};
const absPath = (v: unknown, what: string): string => {
  const s = str(v, what);
  if (!s.startsWith('/')) throw new ConfigError(`${what}: must be an absolute path, got ${JSON.stringify(s)}`);
  return s;
};
const bool = (v: unknown, what: string): boolean => {
  if (typeof v === 'boolean') return v;
  if (v === 'true' || v === 'false') return v === 'true';
  throw new ConfigError(`${what}: expected true or false`);
};
const int = (v: unknown, what: string, min: number): number => {
  const n = typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : typeof v === 'bigint' ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < min) throw new ConfigError(`${what}: expected an integer ≥ ${min}`);
  return n;
};
/** A list of numeric ids: a TOML/JSON array, or "1000,1001" from a flag ("" = none). */
const idList = (v: unknown, what: string): number[] => {
  const items = typeof v === 'string' ? (v.trim() === '' ? [] : v.split(',').map((x) => x.trim())) : v;
  if (!Array.isArray(items)) throw new ConfigError(`${what}: expected a list of numeric ids, e.g. [1000, 1001]`);
  return items.map((x, i) => {
    const n = int(x, `${what}[${i}]`, 0);
    if (n > 0xffff_fffe) throw new ConfigError(`${what}[${i}]: ${n} is not a valid id`);
    return n;
  });
};
const level = (v: unknown, what: string): LogLevel => {
  if (typeof v !== 'string' || !LEVELS.includes(v as LogLevel)) throw new ConfigError(`${what}: expected one of ${LEVELS.join(', ')}`);
  return v as LogLevel;
};

/** "9464", ":9464" (loopback), "127.0.0.1:9464", "0.0.0.0:9464", "[::1]:9464"; "off" or "" = disabled. */
export function parseMetricsAddress(v: unknown, what: string): MetricsAddress | undefined {
  if (v === false || v === 'off' || v === '') return undefined;
  const s = typeof v === 'number' || typeof v === 'bigint' ? String(v) : v;
  if (typeof s !== 'string') throw new ConfigError(`${what}: expected "host:port" or a port`);
  const m = /^(?:(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]*):)?(\d{1,5})$/.exec(s.trim());
  const port = m ? Number(m[2]) : NaN;
  if (!m || port > 65535) throw new ConfigError(`${what}: expected "host:port" (e.g. 127.0.0.1:9464) or a port, got ${JSON.stringify(s)}`);
  const host = m[1] === undefined || m[1] === '' ? '127.0.0.1' : m[1].replace(/^\[|\]$/g, '');
  return { host, port };
}

const logFormat = (v: unknown, what: string): LogFormat => {
  if (v !== 'auto' && v !== 'text' && v !== 'json') throw new ConfigError(`${what}: expected auto, text or json`);
  return v;
};

/** File keys (snake_case) → setters. Shared with the CLI flags (see FLAG_KEYS). */
const TOP: Record<string, (c: Mutable<DaemonConfig>, v: unknown, what: string) => void> = {
  state_dir: (c, v, w) => (c.stateDir = absPath(v, w)),
  mountpoint: (c, v, w) => (c.mountpoint = absPath(v, w)),
  socket: (c, v, w) => (c.socketPath = absPath(v, w)),
  log_level: (c, v, w) => (c.logLevel = level(v, w)),
  cache_size: (c, v, w) => (c.cacheSizeBytes = parseSize(v, w)),
  registries_conf: (c, v, w) => (c.registriesConf = absPath(v, w)),
  auth_file: (c, v, w) => (c.authFile = absPath(v, w)),
  dfs: (c, v, w) => {
    if (!Array.isArray(v)) throw new ConfigError(`${w}: expected a list of absolute paths`);
    c.dfsRoots = v.map((x, i) => absPath(x, `${w}[${i}]`));
  },
  registry: (c, v, w) => (c.registry = bool(v, w)),
  background_fetch: (c, v, w) => (c.backgroundFetch = bool(v, w)),
  era_a_toc_layers: (c, v, w) => {
    if (!ERA_A_TOC_LAYERS.includes(v as EraATocLayers)) throw new ConfigError(`${w}: expected ${ERA_A_TOC_LAYERS.join(' or ')}`);
    c.eraATocLayers = v as EraATocLayers;
  },
  max_index_entries: (c, v, w) => (c.maxIndexEntries = int(v, w, 1)),
  // operations (ops)
  metrics_address: (c, v, w) => (c.metricsAddress = parseMetricsAddress(v, w)),
  log_format: (c, v, w) => (c.logFormat = logFormat(v, w)),
  credentials_ttl_sec: (c, v, w) => (c.credentialsTtlMs = int(v, w, 0) * 1000),
};
const FUSE: Record<string, (f: Mutable<FuseConfig>, v: unknown, what: string) => void> = {
  backend: (f, v, w) => {
    if (!isBackendName(v)) throw new ConfigError(`${w}: expected one of ${BACKENDS.join(', ')}, got ${JSON.stringify(v)}`);
    f.backend = v;
  },
  lookup_timeout_ms: (f, v, w) => (f.lookupTimeoutMs = int(v, w, 100)),
  read_timeout_ms: (f, v, w) => (f.readTimeoutMs = int(v, w, 100)),
  op_timeout_ms: (f, v, w) => (f.opTimeoutMs = int(v, w, 100)),
  entry_timeout_sec: (f, v, w) => (f.entryTimeoutSec = int(v, w, 0)),
  attr_timeout_sec: (f, v, w) => (f.attrTimeoutSec = int(v, w, 0)),
  allow_other: (f, v, w) => (f.allowOther = bool(v, w)),
  suid: (f, v, w) => (f.suid = bool(v, w)),
  max_layers: (f, v, w) => (f.maxLayers = int(v, w, 1)),
  resolve_uids: (f, v, w) => (f.resolveUids = idList(v, w)),
  resolve_gids: (f, v, w) => (f.resolveGids = idList(v, w)),
  id_map: (f, v, w) => {
    if (v !== 'auto' && v !== 'none' && v !== 'subids') throw new ConfigError(`${w}: expected auto, none or subids`);
    f.idMap = v;
  },
  debug: (f, v, w) => (f.debug = bool(v, w)),
};

/** [limits] keys: sizes accept units ("16MiB"), counts are integers ≥ 1. */
const LIMITS: Record<string, (l: Mutable<Limits>, v: unknown, what: string) => void> = {
  max_entries: (l, v, w) => (l.maxEntries = int(v, w, 1)),
  max_toc_bytes: (l, v, w) => (l.maxTocBytes = positiveSize(v, w)),
  max_chunk_bytes: (l, v, w) => (l.maxChunkBytes = positiveSize(v, w)),
  max_compressed_span_bytes: (l, v, w) => (l.maxCompressedSpanBytes = positiveSize(v, w)),
  max_path_bytes: (l, v, w) => (l.maxPathBytes = int(v, w, 1)),
  max_xattr_bytes: (l, v, w) => (l.maxXattrBytes = positiveSize(v, w)),
  max_layer_xattr_bytes: (l, v, w) => (l.maxLayerXattrBytes = positiveSize(v, w)),
  max_tar_header_ext_bytes: (l, v, w) => (l.maxTarHeaderExtBytes = positiveSize(v, w)),
  max_index_heap_bytes: (l, v, w) => (l.maxIndexHeapBytes = positiveSize(v, w)),
};

function positiveSize(v: unknown, what: string): number {
  const n = parseSize(v, what);
  if (n < 1) throw new ConfigError(`${what}: must be at least 1 byte`);
  return n;
}

function clone(c: DaemonConfig): Mutable<DaemonConfig> {
  return { ...c, dfsRoots: [...c.dfsRoots], fuse: { ...c.fuse }, limits: { ...c.limits } };
}

/** Apply one `key = value` (file) or `--flag value` (CLI); `fuse.` prefix for the [fuse] table. */
export function applySetting(c: Mutable<DaemonConfig>, key: string, value: unknown, what: string): void {
  if (key.startsWith('limits.')) {
    const set = LIMITS[key.slice(7)];
    if (!set) throw new ConfigError(`${what}: unknown setting`);
    set(c.limits, value, what);
    return;
  }
  if (key.startsWith('fuse.')) {
    const set = FUSE[key.slice(5)];
    if (!set) throw new ConfigError(`${what}: unknown setting`);
    set(c.fuse, value, what);
    return;
  }
  const set = TOP[key];
  if (!set) throw new ConfigError(`${what}: unknown setting`);
  set(c, value, what);
}

export function applyRaw(base: DaemonConfig, raw: Raw, source: string): DaemonConfig {
  const c = clone(base);
  for (const [k, v] of Object.entries(raw)) {
    if (k === 'fuse' || k === 'limits') {
      if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new ConfigError(`${source}: [${k}] must be a table`);
      for (const [fk, fv] of Object.entries(v as Raw)) applySetting(c, `${k}.${fk}`, fv, `${source}: ${k}.${fk}`);
    } else {
      applySetting(c, k, v, `${source}: ${k}`);
    }
  }
  return c;
}

/** Read and validate a config file (TOML; JSON when the name ends in .json). */
export async function loadConfigFile(path: string, base: DaemonConfig = DEFAULTS): Promise<DaemonConfig> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    throw new ConfigError(`cannot read config file ${path}: ${(e as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = path.endsWith('.json') ? JSON.parse(text) : parseToml(text);
  } catch (e) {
    throw new ConfigError(`config file ${path} is not valid ${path.endsWith('.json') ? 'JSON' : 'TOML'}: ${(e as Error).message.split('\n')[0]}`);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new ConfigError(`config file ${path}: expected a table/object at the top`);
  return { ...applyRaw(base, raw as Raw, path), configFile: path };
}
