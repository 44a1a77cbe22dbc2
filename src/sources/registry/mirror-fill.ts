/**
 * A per-blob gate for reads through a mirror. docker-registry in proxy mode (distribution 2.8)
 * answers a Range request for a blob it has not stored yet with the WHOLE blob streamed from the
 * origin, and starts one more origin stream per such request until its background copy is stored.
 * A store that opens a blob and then reads it in parallel ranges thus makes the mirror fetch the
 * blob from the origin several times. So: the first open of a blob through a mirror goes alone
 * (later opens of the same blob wait for it, then go in parallel), and when the mirror answered its
 * probe with a 200 (not stored yet), it waits until a probe is answered with 206 (stored; ranges
 * served locally) or `maxWaitMs` passes. The gate lives in one source instance; an entry exists only
 * while its first open runs (bounded by `maxPending`; past that, opens are not gated).
 */

export interface MirrorFillOptions {
  /** Give up waiting for the mirror to store a blob after this long (the reads then go anyway). */
  readonly maxWaitMs: number;
  readonly firstDelayMs: number;
  readonly maxDelayMs: number;
  /** Blobs gated at once, at most. */
  readonly maxPending: number;
}

export const DEFAULT_MIRROR_FILL: MirrorFillOptions = Object.freeze({ maxWaitMs: 60_000, firstDelayMs: 100, maxDelayMs: 2_000, maxPending: 1024 });

function abortable<T>(p: Promise<T>, signal?: AbortSignal): Promise<T> {
  if (!signal) return p;
  signal.throwIfAborted();
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = (): void => {
      clearTimeout(t);
      reject(signal!.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

export class MirrorFillGate {
  readonly #o: MirrorFillOptions;
  readonly #now: () => number;
  readonly #pending = new Map<string, Promise<unknown>>();

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
      await abortable(running.catch(() => undefined), signal);
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

  /**
   * Poll `stored()` (true: the mirror served a range itself) with growing delays until it says so
   * or maxWaitMs passes. Returns whether the mirror reported the blob stored.
   */
  async untilStored(stored: (signal?: AbortSignal) => Promise<boolean>, signal?: AbortSignal): Promise<boolean> {
    const deadline = this.#now() + this.#o.maxWaitMs;
    let delay = this.#o.firstDelayMs;
    while (this.#now() + delay <= deadline) {
      await sleep(delay, signal);
      if (await stored(signal)) return true;
      delay = Math.min(this.#o.maxDelayMs, Math.round(delay * 1.5));
    }
    return false;
  }
}
