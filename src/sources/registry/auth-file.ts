/**
 * Credentials from containers-auth.json(5) / Docker config files, looked up like containers/image:
 * files in order ($REGISTRY_AUTH_FILE or an explicit path; $XDG_RUNTIME_DIR/containers/auth.json or
 * /run/containers/<uid>/auth.json; ${XDG_CONFIG_HOME:-~/.config}/containers/auth.json;
 * $DOCKER_CONFIG/config.json or ~/.docker/config.json), first file that knows the registry wins.
 * Within a file: credHelpers[host], then `auths` most specific key first (host/ns/repo … host),
 * then legacy keys normalised (scheme and path stripped; Docker Hub's spellings are one registry),
 * then credsStore.
 *
 * Each file is opened without blocking (a FIFO never hangs a lookup) and checked on its open fd:
 * it must be a regular file owned by root or by the daemon's uid, and not writable by group or
 * others — a file someone else controls could point credHelpers at a program the daemon would run —
 * else it is skipped with a warning. A file group/others can READ is used, with a warning (podman
 * warns about it too): its secrets are already exposed.
 */
import { constants } from 'node:fs';
import { open } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { decodeBase64Strict } from '../../core/base64.js';
import { silentLogger, type Logger } from '../../core/log.js';
import { SourceError } from '../errors.js';
import { isDockerHub } from '../reference.js';
import type { CredentialProvider, CredentialQuery, Credentials } from '../credentials.js';
import { runCredentialHelper, type CredHelperOptions } from './cred-helper.js';

export interface AuthFileOptions {
  /** Explicit auth file (CLI --auth-file): replaces $REGISTRY_AUTH_FILE. */
  readonly authFile?: string;
  readonly env?: NodeJS.ProcessEnv;
  readonly uid?: number;
  readonly home?: string;
  readonly helper?: CredHelperOptions;
  /** Owner besides root whose auth files are trusted (default: the daemon's uid). */
  readonly trustedUid?: number;
  readonly logger?: Logger;
}

export function authFilePaths(opts: AuthFileOptions = {}): string[] {
  const env = opts.env ?? process.env;
  const home = opts.home ?? env['HOME'] ?? homedir();
  const uid = opts.uid ?? process.getuid?.() ?? 0;
  const paths: string[] = [];
  const explicit = opts.authFile ?? env['REGISTRY_AUTH_FILE'];
  if (explicit) paths.push(explicit);
  paths.push(env['XDG_RUNTIME_DIR'] ? join(env['XDG_RUNTIME_DIR'], 'containers/auth.json') : `/run/containers/${uid}/auth.json`);
  paths.push(join(env['XDG_CONFIG_HOME'] || join(home, '.config'), 'containers/auth.json'));
  paths.push(env['DOCKER_CONFIG'] ? join(env['DOCKER_CONFIG'], 'config.json') : join(home, '.docker/config.json'));
  return paths;
}

function normaliseHost(h: string): string {
  return isDockerHub(h) ? 'docker.io' : h;
}

/** Legacy keys ("https://index.docker.io/v1/", "http://host/path") → host. */
function normaliseKey(key: string): string {
  const m = /^https?:\/\/([^/]+)/.exec(key);
  return normaliseHost(m ? m[1]! : key);
}

function candidates(q: CredentialQuery): string[] {
  const host = normaliseHost(q.registry);
  const parts = q.repository.split('/');
  const out: string[] = [];
  for (let n = parts.length; n >= 1; n--) out.push(`${host}/${parts.slice(0, n).join('/')}`);
  out.push(host);
  return out;
}

/** Decode an auths entry; undefined for an empty marker entry. */
function decodeAuthEntry(e: unknown, where: string): Credentials | undefined {
  if (typeof e !== 'object' || e === null) throw new SourceError('REGISTRY_CONFIG', `${where}: auth entry must be an object`);
  const o = e as Record<string, unknown>;
  const identityToken = typeof o['identitytoken'] === 'string' && o['identitytoken'] !== '' ? o['identitytoken'] : undefined;
  const auth = o['auth'];
  if (typeof auth === 'string' && auth !== '') {
    const bytes = decodeBase64Strict(auth);
    if (bytes === undefined) throw new SourceError('REGISTRY_CONFIG', `${where}: "auth" is not base64`);
    const decoded = bytes.toString('utf8').replace(/\0+$/, '');
    const colon = decoded.indexOf(':');
    if (colon < 0) throw new SourceError('REGISTRY_CONFIG', `${where}: "auth" is not base64 of user:password`);
    const username = decoded.slice(0, colon);
    const password = decoded.slice(colon + 1);
    return identityToken ? { username, password, identityToken } : { username, password };
  }
  return identityToken ? { identityToken } : undefined;
}

export class AuthFileCredentials implements CredentialProvider {
  readonly #opts: AuthFileOptions;
  readonly #log: Logger;
  /** Warnings already given (path + reason + mode): once each, not once per lookup. */
  readonly #warned = new Set<string>();
  constructor(opts: AuthFileOptions = {}) {
    this.#opts = opts;
    this.#log = opts.logger ?? silentLogger;
  }

  #warnOnce(event: string, fields: { file: string; mode: string; owner: number; reason: string }): void {
    const k = `${event}\0${fields.file}\0${fields.reason}\0${fields.mode}\0${fields.owner}`;
    if (this.#warned.has(k)) return;
    if (this.#warned.size > 64) this.#warned.clear();
    this.#warned.add(k);
    this.#log.warn(event, fields);
  }

  async lookup(q: CredentialQuery): Promise<Credentials | undefined> {
    for (const path of authFilePaths(this.#opts)) {
      const doc = await this.#readChecked(path);
      if (doc === undefined) continue;
      const c = await this.#fromFile(doc, path, q);
      if (c !== undefined) return c;
    }
    return undefined;
  }

  async #fromFile(doc: Record<string, unknown>, path: string, q: CredentialQuery): Promise<Credentials | undefined> {
    const host = normaliseHost(q.registry);
    const helpers = doc['credHelpers'];
    if (typeof helpers === 'object' && helpers !== null) {
      for (const [k, v] of Object.entries(helpers)) {
        if (normaliseKey(k) === host && typeof v === 'string') return runCredentialHelper(v, q.registry, this.#opts.helper);
      }
    }
    const auths = doc['auths'];
    if (typeof auths === 'object' && auths !== null) {
      const entries = auths as Record<string, unknown>;
      for (const key of candidates(q)) {
        if (key in entries) {
          const c = decodeAuthEntry(entries[key], `${path} auths[${key}]`);
          if (c !== undefined) return c;
        }
      }
      for (const [k, v] of Object.entries(entries)) {
        if (normaliseKey(k) === host) {
          const c = decodeAuthEntry(v, `${path} auths[${k}]`);
          if (c !== undefined) return c;
        }
      }
    }
    const store = doc['credsStore'];
    if (typeof store === 'string' && store !== '') return runCredentialHelper(store, q.registry, this.#opts.helper);
    return undefined;
  }

  /** The file's JSON, or undefined when it is absent or refused (see the essay at the top). */
  async #readChecked(path: string): Promise<Record<string, unknown> | undefined> {
    let fh;
    try {
      fh = await open(path, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
      throw new SourceError('REGISTRY_CONFIG', `cannot read auth file ${path}: ${(e as Error).message}`, { source: path }, { cause: e });
    }
    let text: string;
    try {
      const st = await fh.stat();
      const trusted = new Set([0, this.#opts.trustedUid ?? process.getuid?.() ?? 0]);
      const info = { file: path, mode: (st.mode & 0o7777).toString(8).padStart(4, '0'), owner: st.uid };
      if (!st.isFile()) {
        this.#warnOnce('registry.auth_file_refused', { ...info, reason: 'not a regular file' });
        return undefined;
      }
      if (!trusted.has(st.uid)) {
        this.#warnOnce('registry.auth_file_refused', { ...info, reason: `owned by uid ${st.uid}, not by root or the daemon's uid` });
        return undefined;
      }
      if ((st.mode & 0o022) !== 0) {
        this.#warnOnce('registry.auth_file_refused', { ...info, reason: 'writable by group or others' });
        return undefined;
      }
      if ((st.mode & 0o044) !== 0) this.#warnOnce('registry.auth_file_readable', { ...info, reason: 'readable by group or others: chmod 600 it' });
      text = await fh.readFile('utf8');
    } catch (e) {
      throw new SourceError('REGISTRY_CONFIG', `cannot read auth file ${path}: ${(e as Error).message}`, { source: path }, { cause: e });
    } finally {
      await fh.close();
    }
    return parseAuthJson(text, path);
  }
}

function parseAuthJson(text: string, path: string): Record<string, unknown> {
  try {
    const j = JSON.parse(text) as unknown;
    if (typeof j !== 'object' || j === null || Array.isArray(j)) throw new Error('not an object');
    return j as Record<string, unknown>;
  } catch (e) {
    throw new SourceError('REGISTRY_CONFIG', `auth file ${path} is not a JSON object`, { source: path }, { cause: e });
  }
}
