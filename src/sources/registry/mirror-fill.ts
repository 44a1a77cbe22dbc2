/**
 * A per-blob gate for reads through a mirror. docker-registry in proxy mode (distribution 2.8)
 * answers a Range request for a blob it has not stored yet with the WHOLE blob streamed from the
 * origin, and starts one more origin stream per such request until its background copy is stored.
 * A store that opens a blob and then reads it in parallel ranges thus makes the mirror fetch the
 * blob from the origin several times. So: the first open of a blob through a mirror goes alone
 * (later opens of the same blob wait for it, then go in parallel), and when the mirror answered its
 * probe with a 200 (not stored yet), it waits until a probe is answered with 206 (stored; ranges
 * served locally) or `maxWaitMs` passes. A mirror that never answered a range with 206 and made us
 * wait in vain (one that ignores Range altogether) is not waited for again. The gate lives in one
 * source instance; an entry exists only while its first open runs (bounded by `maxPending`; past
 * that, opens are not gated).
 */
import { raceAbort, sleep } from '../../core/abort.js';

export interface MirrorFillOptions {
  /** Give up waiting for the mirror to store a blob after this long (the reads then go anyway). */
  readonly maxWaitMs: number;
  readonly firstDelayMs: number;
  readonly maxDelayMs: number;
  /** Blobs gated at once, at most. */
  readonly maxPending: number;
}

const DEFAULT_MIRROR_FILL: MirrorFillOptions = Object.freeze({ maxWaitMs: 30_000, firstDelayMs: 100, maxDelayMs: 2_000, maxPending: 1024 });

export class MirrorFillGate {
  readonly #o: MirrorFillOptions;
  readonly #now: () => number;
  readonly #pending = new Map<string, Promise<unknown>>();
  /** Mirrors (origins) seen to serve a range: 206 to some probe. */
  readonly #ranged = new Set<string>();
  /** Mirrors waited for in vain without ever serving a range: not waited for again. */
  readonly #rangeless = new Set<string>();

  constructor(o: Partial<MirrorFillOptions> = {}, now: () => number = Date.now) {
    this.#o = { ...DEFAULT_MIRROR_FILL, ...o };
    this.#now = now;
  }

  /** Blobs whose first open is running now. */
  get pending(): number {
    return this.#pending.size;
  }

  /**
   * Run `first` alone for `key` when no open of it is running; otherwise wait for that one to end
   * (success or not) and run `then` without the gate.
   */
  async once<T>(key: string, first: () => Promise<T>, then: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    const running = this.#pending.get(key);
    if (running) {
      await raceAbort(running.catch(() => undefined), signal);
      return then();
    }
    if (this.#pending.size >= this.#o.maxPending) return first();
    const p = first();
    this.#pending.set(key, p);
    try {
      return await p;
    } finally {
      if (this.#pending.get(key) === p) this.#pending.delete(key);
    }
  }

  /** Record a probe's answer from `mirror`: true = 206 (it served the range itself). */
  saw(mirror: string, ranged: boolean): void {
    if (ranged && this.#ranged.size < this.#o.maxPending) this.#ranged.add(mirror);
  }

  /**
   * Poll `stored()` (true: the mirror served a range itself) with growing delays until it says so
   * or maxWaitMs passes. Returns whether the mirror reported the blob stored.
   */
  async untilStored(mirror: string, stored: (signal?: AbortSignal) => Promise<boolean>, signal?: AbortSignal): Promise<boolean> {
    if (this.#rangeless.has(mirror)) return false;
    const deadline = this.#now() + this.#o.maxWaitMs;
    let delay = this.#o.firstDelayMs;
    while (this.#now() + delay <= deadline) {
      await sleep(delay, signal);
      if (await stored(signal)) {
        this.saw(mirror, true);
        return true;
      }
      delay = Math.min(this.#o.maxDelayMs, Math.round(delay * 1.5));
    }
    if (!this.#ranged.has(mirror) && this.#rangeless.size < this.#o.maxPending) this.#rangeless.add(mirror);
    return false;
  }
}
