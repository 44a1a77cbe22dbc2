/**
 * `use` counts (create `<layer>/use` = +1, `rmdir <layer>` = −1): hints only (docs/als-contract.md),
 * never below 0; a release of an unknown layer is a no-op and a count of 0 never makes a layer
 * unavailable. Bounded: at most `max` layers are counted, the least recently touched forgotten first
 * (forgetting a hint is harmless), so `use` creates on random names cannot grow memory.
 */
import type { LayerId } from './layer-id.js';

const DEFAULT_USE_COUNTS_MAX = 4096;

export class UseCounts {
  /** Map order = recency (a touched entry is re-inserted at the end). */
  readonly #counts = new Map<LayerId, number>();
  readonly #max: number;

  constructor(max = DEFAULT_USE_COUNTS_MAX) {
    this.#max = Math.max(1, max);
  }

  use(id: LayerId): number {
    const n = (this.#counts.get(id) ?? 0) + 1;
    this.#counts.delete(id);
    this.#counts.set(id, n);
    if (this.#counts.size > this.#max) {
      const oldest = this.#counts.keys().next();
      if (!oldest.done) this.#counts.delete(oldest.value);
    }
    return n;
  }

  release(id: LayerId): number {
    const n = this.#counts.get(id);
    if (n === undefined) return 0;
    this.#counts.delete(id);
    if (n <= 1) return 0;
    this.#counts.set(id, n - 1);
    return n - 1;
  }

  get(id: LayerId): number {
    return this.#counts.get(id) ?? 0;
  }

  entries(): IterableIterator<[LayerId, number]> {
    return this.#counts.entries();
  }

  get size(): number {
    return this.#counts.size;
  }
}
