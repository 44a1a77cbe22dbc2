/**
 * containers-registries.conf(5), version 2, plus drop-ins: what lazy-als needs of it is, per
 * registry prefix, where to fetch from (location, mirrors), whether plain HTTP is allowed and
 * whether the registry is blocked. Drop-ins (`<file>.d/*.conf`, lexical order) are applied after the
 * main file; a `[[registry]]` with the same prefix replaces the earlier one, other top-level keys
 * override. The v1 format's `[registries.insecure]` / `[registries.block]` lists are understood too.
 */
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { parse as parseToml } from 'smol-toml';
import { SourceError } from '../errors.js';

export type PullFromMirror = 'all' | 'digest-only' | 'tag-only';

interface MirrorConfig {
  readonly location: string;
  readonly insecure?: boolean;
  readonly pullFromMirror: PullFromMirror;
}

export interface RegistryConfig {
  /** "host[/path]" or "*.domain". */
  readonly prefix: string;
  /** "host[/path]"; defaults to prefix. */
  readonly location: string;
  /** undefined: not configured (loopback hosts then default to HTTP, see registry-route.ts). */
  readonly insecure?: boolean;
  readonly blocked: boolean;
  readonly mirrors: readonly MirrorConfig[];
}

export interface RegistriesConf {
  readonly registries: readonly RegistryConfig[];
  /** Files read, in order (for logs). */
  readonly files: readonly string[];
}

const DEFAULT_REGISTRIES_CONF = '/etc/containers/registries.conf';
export const EMPTY_REGISTRIES_CONF: RegistriesConf = Object.freeze({ registries: [], files: [] });

function configError(file: string, msg: string, cause?: unknown): SourceError {
  return new SourceError('REGISTRY_CONFIG', `${file}: ${msg}`, { source: file }, { cause });
}

function optBool(v: unknown, file: string, key: string): boolean | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'boolean') throw configError(file, `${key} must be a boolean`);
  return v;
}

function str(v: unknown, file: string, key: string): string | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'string') throw configError(file, `${key} must be a string`);
  return v.replace(/^https?:\/\//, '').replace(/\/+$/, '');
}

function parseRegistryTable(t: unknown, file: string): RegistryConfig {
  if (typeof t !== 'object' || t === null || Array.isArray(t)) throw configError(file, '[[registry]] must be a table');
  const o = t as Record<string, unknown>;
  const location = str(o['location'], file, 'location') ?? '';
  const prefix = str(o['prefix'], file, 'prefix') || location;
  if (!prefix) throw configError(file, '[[registry]] needs a prefix or a location');
  if (prefix.startsWith('*.') && location) throw configError(file, `wildcard prefix ${prefix} cannot have a location`);
  const digestOnly = optBool(o['mirror-by-digest-only'], file, 'mirror-by-digest-only') ?? false;
  const mirrorsRaw = o['mirror'] ?? [];
  if (!Array.isArray(mirrorsRaw)) throw configError(file, '[[registry.mirror]] must be an array of tables');
  const mirrors = mirrorsRaw.map((m): MirrorConfig => {
    if (typeof m !== 'object' || m === null) throw configError(file, 'mirror must be a table');
    const mo = m as Record<string, unknown>;
    const loc = str(mo['location'], file, 'mirror.location');
    if (!loc) throw configError(file, 'mirror without location');
    const pfm = mo['pull-from-mirror'] ?? (digestOnly ? 'digest-only' : 'all');
    if (pfm !== 'all' && pfm !== 'digest-only' && pfm !== 'tag-only') throw configError(file, `bad pull-from-mirror ${String(pfm)}`);
    const insecure = optBool(mo['insecure'], file, 'mirror.insecure');
    return { location: loc, pullFromMirror: pfm, ...(insecure !== undefined ? { insecure } : {}) };
  });
  const insecure = optBool(o['insecure'], file, 'insecure');
  return {
    prefix,
    location: location || (prefix.startsWith('*.') ? '' : prefix),
    blocked: optBool(o['blocked'], file, 'blocked') ?? false,
    mirrors,
    ...(insecure !== undefined ? { insecure } : {}),
  };
}

function v1Lists(doc: Record<string, unknown>, file: string): RegistryConfig[] {
  const regs = doc['registries'];
  if (typeof regs !== 'object' || regs === null || Array.isArray(regs)) return [];
  const out: RegistryConfig[] = [];
  const list = (k: string): string[] => {
    const v = (regs as Record<string, unknown>)[k];
    const l = typeof v === 'object' && v !== null ? (v as Record<string, unknown>)['registries'] : undefined;
    if (l === undefined) return [];
    if (!Array.isArray(l) || !l.every((x) => typeof x === 'string')) throw configError(file, `registries.${k}.registries must be strings`);
    return l as string[];
  };
  for (const h of list('insecure')) out.push({ prefix: h, location: h, insecure: true, blocked: false, mirrors: [] });
  for (const h of list('block')) out.push({ prefix: h, location: h, blocked: true, mirrors: [] });
  return out;
}

/** Parse one file's text; `name` is used in error messages. */
export function parseRegistriesConf(text: string, name: string): RegistryConfig[] {
  let doc: Record<string, unknown>;
  try {
    doc = parseToml(text) as Record<string, unknown>;
  } catch (e) {
    throw configError(name, `not valid TOML: ${(e as Error).message.split('\n')[0]}`, e);
  }
  const raw = doc['registry'] ?? [];
  if (!Array.isArray(raw)) throw configError(name, '[[registry]] must be an array of tables');
  return [...v1Lists(doc, name), ...raw.map((t) => parseRegistryTable(t, name))];
}

async function readOptional(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw configError(path, `cannot read: ${(e as Error).message}`, e);
  }
}

/**
 * The file containers/image reads: $CONTAINERS_REGISTRIES_CONF, else for a non-root user
 * $HOME/.config/containers/registries.conf when it exists (containers-registries.conf(5)), else
 * /etc/containers/registries.conf.
 */
async function defaultRegistriesConf(env: NodeJS.ProcessEnv, uid: number): Promise<string> {
  const given = env['CONTAINERS_REGISTRIES_CONF'];
  if (given) return given;
  const home = env['HOME'];
  if (uid !== 0 && home) {
    const user = join(home, '.config', 'containers', 'registries.conf');
    if ((await readOptional(user)) !== undefined) return user;
  }
  return DEFAULT_REGISTRIES_CONF;
}

/**
 * Load `path` (default: the file containers/image reads, see defaultRegistriesConf) and the
 * drop-ins in `dropInDir` (default `<path>.d`). A missing file is an empty configuration.
 */
export async function loadRegistriesConf(opts: { path?: string; dropInDir?: string; env?: NodeJS.ProcessEnv } = {}): Promise<RegistriesConf> {
  const env = opts.env ?? process.env;
  const path = opts.path ?? (await defaultRegistriesConf(env, process.getuid?.() ?? 0));
  const dir = opts.dropInDir ?? `${path}.d`;
  const files: string[] = [];
  const byPrefix = new Map<string, RegistryConfig>();
  const apply = (name: string, text: string | undefined): void => {
    if (text === undefined) return;
    files.push(name);
    for (const r of parseRegistriesConf(text, name)) byPrefix.set(r.prefix, r);
  };
  apply(path, await readOptional(path));
  let names: string[] = [];
  try {
    names = (await readdir(dir)).filter((n) => n.endsWith('.conf')).sort();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT' && (e as NodeJS.ErrnoException).code !== 'ENOTDIR') throw configError(dir, (e as Error).message, e);
  }
  for (const n of names) apply(join(dir, n), await readOptional(join(dir, n)));
  return { registries: [...byPrefix.values()], files };
}
