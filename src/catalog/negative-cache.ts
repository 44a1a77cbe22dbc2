/**
 * Lookups that failed, answered "not found" again without any work until their TTL runs out
 * (docs/als-contract.md: negative answers must be fast). Bounded: at most `max` entries, the least
 * recently failed dropped first, so a flood of random names costs a fixed amount of memory.
 */
import { LRUCache } from 'lru-cache';
import type { LayerId } from './layer-id.js';

const DEFAULT_NEGATIVE_TTL_MS = 5000;
const DEFAULT_NEGATIVE_MAX = 4096;

export interface NegativeCacheOptions {
  readonly ttlMs?: number;
  readonly max?: number;
  readonly now: () => number;
}

export class NegativeCache {
  readonly #until: LRUCache<LayerId, number>;
  readonly #ttl: number;
  readonly #now: () => number;

  constructor(o: NegativeCacheOptions) {
    this.#ttl = o.ttlMs ?? DEFAULT_NEGATIVE_TTL_MS;
    this.#now = o.now;
    this.#until = new LRUCache({ max: Math.max(1, o.max ?? DEFAULT_NEGATIVE_MAX) });
  }

  add(id: LayerId): void {
    this.#until.set(id, this.#now() + this.#ttl);
  }

  /** True while `id` is remembered as failed (an expired entry is dropped). */
  has(id: LayerId): boolean {
    const until = this.#until.get(id);
    if (until === undefined) return false;
    if (until > this.#now()) return true;
    this.#until.delete(id);
    return false;
  }

  /** Entries not yet expired. */
  live(): number {
    const now = this.#now();
    let n = 0;
    for (const until of this.#until.values()) if (until > now) n++;
    return n;
  }
}
