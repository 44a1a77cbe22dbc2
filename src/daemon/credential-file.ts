/**
 * Credentials the auth helper handed over, kept across daemon restarts (CRI-O and podman call the
 * helper at pull time only: after a restart the store must still reach private registries for
 * lazy reads). One file, `<state dir>/credentials.json`, mode 0600, written atomically; each entry
 * is keyed by the LOGICAL reference the engine named (the pull's reference, also when a mirror
 * serves it) and expires: with the token when the secret is a JWT with an `exp` claim, else after
 * `credentials_ttl` (default 12 h). Expired entries are dropped when the file is read and written.
 */
import { chmod, open, readFile, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../core/log.js';
import type { Credentials } from '../sources/credentials.js';
import { parseHelperPayload, type HelperEntry } from '../sources/helper-payload.js';

const CREDENTIALS_FILE = 'credentials.json';

interface StoredEntry {
  readonly credentials: Credentials;
  /** ms since the epoch. */
  readonly expiresAt: number;
}

/** `exp` (seconds) of a JWT, if the string is one. */
function jwtExpiry(token: string | undefined): number | undefined {
  if (!token) return undefined;
  const parts = token.split('.');
  if (parts.length !== 3) return undefined;
  try {
    const claims = JSON.parse(Buffer.from(parts[1]!, 'base64url').toString('utf8')) as { exp?: unknown };
    return typeof claims.exp === 'number' && Number.isFinite(claims.exp) ? claims.exp * 1000 : undefined;
  } catch {
    return undefined;
  }
}

export class CredentialFile {
  readonly path: string;
  readonly #ttlMs: number;
  readonly #now: () => number;
  readonly #log: Logger;
  readonly #entries = new Map<string, StoredEntry>();
  #writing: Promise<void> = Promise.resolve();

  constructor(stateDir: string, ttlMs: number, logger: Logger, now: () => number = Date.now) {
    this.path = join(stateDir, CREDENTIALS_FILE);
    this.#ttlMs = ttlMs;
    this.#now = now;
    this.#log = logger;
  }

  /** The unexpired entries on disk (a missing or unreadable file is no entries, logged). */
  async load(): Promise<HelperEntry[]> {
    let text: string;
    try {
      text = await readFile(this.path, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') this.#log.warn('credentials.file_unreadable', { path: this.path, error: e });
      return [];
    }
    let raw: Record<string, StoredEntry>;
    try {
      raw = JSON.parse(text) as Record<string, StoredEntry>;
    } catch (e) {
      this.#log.warn('credentials.file_invalid', { path: this.path, error: e });
      return [];
    }
    const now = this.#now();
    const payload: Record<string, Credentials> = {};
    for (const [ref, e] of Object.entries(raw ?? {})) {
      if (typeof e?.expiresAt !== 'number' || e.expiresAt <= now || typeof e.credentials !== 'object') continue;
      this.#entries.set(ref, { credentials: e.credentials, expiresAt: e.expiresAt });
      payload[ref] = e.credentials;
    }
    try {
      return parseHelperPayload(JSON.stringify(payload));
    } catch (e) {
      this.#log.warn('credentials.file_invalid', { path: this.path, error: e });
      this.#entries.clear();
      return [];
    }
  }

  /** Remember entries (by their reference string) and rewrite the file. */
  save(entries: readonly HelperEntry[]): Promise<void> {
    const now = this.#now();
    for (const e of entries) {
      const c = e.credentials;
      const exp = jwtExpiry(c.identityToken) ?? jwtExpiry(c.password) ?? now + this.#ttlMs;
      this.#entries.set(e.ref.string, { credentials: c, expiresAt: Math.min(exp, now + this.#ttlMs * 30) });
    }
    for (const [k, v] of this.#entries) if (v.expiresAt <= now) this.#entries.delete(k);
    // One write at a time, each with the full current set.
    this.#writing = this.#writing.then(() => this.#write()).catch((e: unknown) => this.#log.warn('credentials.persist_failed', { path: this.path, error: e }));
    return this.#writing;
  }

  async #write(): Promise<void> {
    const tmp = `${this.path}.tmp-${process.pid}`;
    const fh = await open(tmp, 'w', 0o600);
    try {
      await fh.chmod(0o600);
      await fh.writeFile(JSON.stringify(Object.fromEntries(this.#entries)) + '\n');
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, this.path).catch(async (e: unknown) => {
      await unlink(tmp).catch(() => undefined);
      throw e;
    });
    await chmod(this.path, 0o600);
  }
}
