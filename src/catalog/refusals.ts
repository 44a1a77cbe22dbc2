/**
 * Layers the store would not serve, and why — so that podman falling back to a full download is
 * never silent. Two kinds:
 *  - `refused`: resolution failed (bad TOC, TOC that does not match its tar, registry error, …);
 *    lookups answer ENOENT and podman pulls the layer itself;
 *  - `quarantined`: a layer already served turned out not to match its blob (a tar header that
 *    disagrees with the TOC, a diff_id mismatch after a full read): its reads answer EIO from then on.
 * Bounded: the most recent MAX entries, one per (ref, key); a repeat refreshes it and counts.
 */
import { type ErrorCode, LazyAlsError } from '../core/errors.js';

export interface Refusal {
  readonly kind: 'refused' | 'quarantined';
  /** Store key (blob or TOC digest). */
  readonly key: string;
  /** Image reference the lookup came with, when the store runs with `:ref`. */
  readonly ref?: string;
  /** Typed error code (e.g. FORMAT_CONFLICT), or INTERNAL for anything not a LazyAlsError. */
  readonly code: ErrorCode | 'INTERNAL';
  readonly message: string;
  /** Last time (ms since the epoch) and how often. */
  readonly at: number;
  readonly count: number;
}

function reasonOf(e: unknown): { code: ErrorCode | 'INTERNAL'; message: string } {
  if (e instanceof LazyAlsError) return { code: e.code, message: e.message };
  return { code: 'INTERNAL', message: e instanceof Error ? e.message : String(e) };
}

export class RefusalLog {
  static readonly MAX = 100;
  /** Insertion order = age: a Map re-inserted on update keeps the newest last. */
  readonly #entries = new Map<string, Refusal>();
  readonly #now: () => number;

  constructor(now: () => number = Date.now) {
    this.#now = now;
  }

  record(kind: Refusal['kind'], key: string, ref: string | undefined, error: unknown): Refusal {
    const id = `${ref ?? ''}\u0000${key}`;
    const prev = this.#entries.get(id);
    this.#entries.delete(id);
    const r: Refusal = { kind, key, ...(ref !== undefined ? { ref } : {}), ...reasonOf(error), at: this.#now(), count: (prev?.count ?? 0) + 1 };
    this.#entries.set(id, r);
    while (this.#entries.size > RefusalLog.MAX) this.#entries.delete(this.#entries.keys().next().value!);
    return r;
  }

  /** Newest first. */
  list(): Refusal[] {
    return [...this.#entries.values()].reverse();
  }
}
