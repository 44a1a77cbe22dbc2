/**
 * Reused shared-memory buffers for transient bytes (compressed spans on their way from the socket to a
 * decode worker). A fresh 64 MiB buffer costs 16,384 first-touch page faults when it is filled: on
 * the 2-vCPU VM that was 90–370 ms per 64 MiB against 8–25 ms to fill a reused one, and as much as
 * `curl` takes for the whole blob.
 *
 * Only a holder that knows when nobody reads the bytes any more gives a buffer back (release): the
 * chunk reader does, once every decode of the spans has finished. A buffer never released is simply
 * collected. Sizes are rounded up to a class (×1.25 steps from 64 KiB; untouched tail pages cost
 * nothing); buffers above `maxBuffer` are never pooled, and at most `maxIdleBytes` wait for reuse.
 */

const MIN_CLASS = 64 * 1024;
const STEP = 1.25;

export interface BufferPoolOptions {
  /** Bytes of idle buffers kept for reuse, at most (default 32 MiB). */
  readonly maxIdleBytes?: number;
  /** Buffers larger than this are allocated fresh and never kept (default 16 MiB). */
  readonly maxBuffer?: number;
}

/** The smallest class ≥ n (classes are integers: 64 KiB × 1.25^k, rounded up to 4 KiB pages). */
export function sizeClass(n: number): number {
  let c = MIN_CLASS;
  while (c < n) c = Math.ceil((c * STEP) / 4096) * 4096;
  return c;
}

export class SharedBufferPool {
  readonly #maxIdle: number;
  readonly #maxBuffer: number;
  readonly #idle = new Map<number, SharedArrayBuffer[]>();
  /** Memory handed out and not given back: only these may come back (weak: never released is fine). */
  readonly #lent = new WeakSet<SharedArrayBuffer>();
  #idleBytes = 0;
  #reused = 0;

  constructor(o: BufferPoolOptions = {}) {
    this.#maxIdle = o.maxIdleBytes ?? 32 * 1024 * 1024;
    this.#maxBuffer = o.maxBuffer ?? 16 * 1024 * 1024;
  }

  get idleBytes(): number {
    return this.#idleBytes;
  }

  /** How many acquires were served from idle buffers. */
  get reused(): number {
    return this.#reused;
  }

  /** A buffer of exactly `length` bytes in shared memory; its content is undefined (not zeroed when reused). */
  acquire(length: number): Buffer {
    if (length > this.#maxBuffer || length === 0) return Buffer.from(new SharedArrayBuffer(length));
    const cls = sizeClass(length);
    const sab = this.#idle.get(cls)?.pop();
    if (sab) {
      this.#idleBytes -= cls;
      this.#reused++;
    }
    const mem = sab ?? new SharedArrayBuffer(cls);
    this.#lent.add(mem);
    return Buffer.from(mem, 0, length);
  }

  /**
   * Give back the memory of buffers acquire() returned (any view of them); the caller and everyone it
   * handed them to must be done with them. Views of one buffer may appear several times; memory this
   * pool did not lend, or already got back, is ignored.
   */
  release(bufs: Iterable<Uint8Array>): void {
    for (const b of bufs) {
      const mem = b.buffer;
      if (!(mem instanceof SharedArrayBuffer) || !this.#lent.has(mem)) continue;
      this.#lent.delete(mem);
      const cls = mem.byteLength;
      if (this.#idleBytes + cls > this.#maxIdle) continue;
      let list = this.#idle.get(cls);
      if (!list) this.#idle.set(cls, (list = []));
      list.push(mem);
      this.#idleBytes += cls;
    }
  }
}
