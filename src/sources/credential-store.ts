/**
 * In-memory credentials fed by the auth helper (bin/lazy-als-auth-helper.js → daemon control
 * socket → addPayload). Keyed by the reference the helper names; lookup matches by registry and
 * repository (Docker Hub's spellings are one registry), falling back to the newest entry for the
 * same registry (an image's blobs may be fetched under a sibling repository, and the helper's
 * credentials are the user's registry credentials anyway). Anonymous entries ({}) are kept but do
 * not answer, so other providers (auth.json) are still consulted. Bounded: oldest entries go first.
 */
import type { CredentialProvider, CredentialQuery, Credentials } from './credentials.js';
import { parseHelperPayload, type HelperEntry } from './helper-payload.js';
import { isDockerHub, type ImageReference } from './reference.js';

function hostKey(h: string): string {
  return isDockerHub(h) ? 'docker.io' : h.toLowerCase();
}

export class CredentialStore implements CredentialProvider {
  readonly #byRepo = new Map<string, Credentials>();
  readonly #max: number;

  constructor(opts: { maxEntries?: number } = {}) {
    this.#max = opts.maxEntries ?? 1024;
  }

  get size(): number {
    return this.#byRepo.size;
  }

  add(entries: readonly HelperEntry[]): void {
    for (const e of entries) {
      const k = `${hostKey(e.ref.domain)}/${e.ref.path}`;
      this.#byRepo.delete(k); // re-insert: Map order = recency
      this.#byRepo.set(k, Object.freeze({ ...e.credentials }));
      while (this.#byRepo.size > this.#max) this.#byRepo.delete(this.#byRepo.keys().next().value!);
    }
  }

  /** Parse and add a helper payload; returns the references added. Throws CREDENTIALS_INVALID. */
  addPayload(json: string | Uint8Array): string[] {
    const entries = parseHelperPayload(json);
    this.add(entries);
    return entries.map((e) => e.ref.string);
  }

  async lookup(q: CredentialQuery | Pick<ImageReference, 'domain' | 'path'>): Promise<Credentials | undefined> {
    return this.lookupSync(q);
  }

  lookupSync(q: CredentialQuery | Pick<ImageReference, 'domain' | 'path'>): Credentials | undefined {
    const host = hostKey('registry' in q ? q.registry : q.domain);
    const repo = 'registry' in q ? q.repository : q.path;
    const exact = this.#byRepo.get(`${host}/${repo}`);
    if (exact && usable(exact)) return exact;
    let found: Credentials | undefined;
    for (const [k, c] of this.#byRepo) if (k.startsWith(host + '/') && usable(c)) found = c; // newest wins
    return found;
  }
}

function usable(c: Credentials): boolean {
  return c.identityToken !== undefined || c.username !== undefined;
}
