/**
 * Size-bounded LRU eviction for the chunk/blob object store.
 *
 * Access times live in memory (a Map updated on every hit, which is cheap) and are flushed
 * periodically into the objects' mtimes, so the LRU order survives restarts without a database:
 * after a restart an object's last access is its mtime. gc() lists the store, orders objects by
 * last access and deletes the oldest until usage is at or below the target.
 *
 * Only the chunk store is ever handed to an Eviction: metadata (manifests, configs, layer records)
 * lives in a separate ObjectStore and is never evicted, so every layer ever served can be found again
 * offline; evicted chunks are simply fetched again from the source on the next read.
 *
 * Pinning: `isPinned` protects objects; `beforeGc` runs at the start of every gc (automatic or
 * asked for) so the caller can refresh what is pinned (the daemon pins the objects of layers whose
 * `use` count is > 0: a running container's bytes are never evicted, docs/als-contract.md §7). When
 * pinned objects alone exceed the limit, the store stays over it: the next automatic gc then waits
 * until usage grows past that overshoot again (no gc per stored object).
 */
import type { Digest } from '../core/digest.js';
import { silentLogger, type Logger } from '../core/log.js';
import type { ObjectStore } from './object-store.js';

export interface EvictionOptions {
  readonly store: ObjectStore;
  /** Size limit for the store, in bytes. */
  readonly maxBytes: number;
  /** Automatic gc evicts down to maxBytes × lowWater (default 0.9) to avoid evicting on every put. */
  readonly lowWater?: number;
  /** How often access times are flushed to mtimes, ms (default 60 s; 0 = only on flush()/stop()). */
  readonly flushIntervalMs?: number;
  readonly isPinned?: (d: Digest) => boolean;
  /** Called once at the start of every gc run, before isPinned is asked (refresh pins). */
  readonly beforeGc?: () => void;
  readonly now?: () => number;
  readonly logger?: Logger;
}

export interface GcResult {
  readonly objectsBefore: number;
  readonly bytesBefore: number;
  readonly deleted: number;
  readonly freedBytes: number;
  readonly bytesAfter: number;
}

export class Eviction {
  readonly #store: ObjectStore;
  readonly #max: number;
  readonly #lowWater: number;
  readonly #flushMs: number;
  readonly #isPinned: (d: Digest) => boolean;
  readonly #beforeGc: (() => void) | undefined;
  readonly #now: () => number;
  readonly #log: Logger;
  /** digest → last access (ms), not yet flushed to the file's mtime. */
  readonly #dirty = new Map<Digest, number>();
  /** digest → last access seen in this process (flushed or not). */
  readonly #access = new Map<Digest, number>();
  #usage = 0;
  /** Bytes the last gc could not free below the limit (pinned objects): automatic gc waits past them. */
  #overshoot = 0;
  #gcRunning: Promise<GcResult> | undefined;
  /** Totals since open (for metrics): objects and bytes evicted, gc runs. */
  readonly #evicted = { objects: 0, bytes: 0, runs: 0 };
  #timer: NodeJS.Timeout | undefined;

  private constructor(opts: EvictionOptions) {
    this.#store = opts.store;
    this.#max = opts.maxBytes;
    this.#lowWater = opts.lowWater ?? 0.9;
    this.#flushMs = opts.flushIntervalMs ?? 60_000;
    this.#isPinned = opts.isPinned ?? (() => false);
    this.#beforeGc = opts.beforeGc;
    this.#now = opts.now ?? Date.now;
    this.#log = opts.logger ?? silentLogger;
  }

  /** Create and measure the store's current usage (one directory scan). */
  static async open(opts: EvictionOptions): Promise<Eviction> {
    const e = new Eviction(opts);
    e.#usage = (await e.#store.usage()).bytes;
    return e;
  }

  get maxBytes(): number {
    return this.#max;
  }
  /** Approximate bytes in the store (exact after open() and gc()). */
  get usageBytes(): number {
    return this.#usage;
  }

  /** Objects and bytes evicted and gc runs since open() (metrics). */
  get evicted(): { readonly objects: number; readonly bytes: number; readonly runs: number } {
    return { ...this.#evicted };
  }

  /** Whether the periodic access-time flush runs (start() was called, stop() was not). */
  get running(): boolean {
    return this.#timer !== undefined;
  }

  start(): void {
    if (this.#timer || this.#flushMs <= 0) return;
    this.#timer = setInterval(() => void this.flush().catch(() => undefined), this.#flushMs);
    this.#timer.unref();
  }

  async stop(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    await this.#gcRunning?.catch(() => undefined);
    await this.flush();
  }

  /** Record an access (hit). */
  touch(d: Digest): void {
    const t = this.#now();
    this.#access.set(d, t);
    this.#dirty.set(d, t);
  }

  /** Record a newly stored object; triggers a background gc when over the limit. */
  noteStored(d: Digest, size: number): void {
    this.#usage += size;
    this.touch(d);
    if (this.#usage > this.#max + this.#overshoot && !this.#gcRunning) {
      void this.gc().catch((e: unknown) => this.#log.warn('cache.gc_failed', { error: e }));
    }
  }

  /** Record an object deleted outside gc (a quarantined layer's chunks). */
  noteDeleted(d: Digest, size: number): void {
    this.#usage = Math.max(0, this.#usage - size);
    this.#access.delete(d);
    this.#dirty.delete(d);
  }

  /** Persist pending access times into file mtimes. */
  async flush(): Promise<void> {
    const batch = [...this.#dirty];
    this.#dirty.clear();
    for (const [d, t] of batch) await this.#store.touch(d, t);
  }

  /**
   * Evict least-recently-used objects until usage ≤ targetBytes (default maxBytes × lowWater).
   * Concurrent calls share one run.
   */
  gc(opts: { targetBytes?: number } = {}): Promise<GcResult> {
    if (this.#gcRunning) return this.#gcRunning;
    const p = this.#runGc(opts.targetBytes ?? Math.floor(this.#max * this.#lowWater)).finally(() => {
      this.#gcRunning = undefined;
    });
    this.#gcRunning = p;
    return p;
  }

  async #runGc(target: number): Promise<GcResult> {
    this.#beforeGc?.();
    const objs: { d: Digest; size: number; at: number }[] = [];
    let bytes = 0;
    for await (const o of this.#store.list()) {
      bytes += o.size;
      objs.push({ d: o.digest, size: o.size, at: Math.max(o.mtimeMs, this.#access.get(o.digest) ?? 0) });
    }
    const before = { objectsBefore: objs.length, bytesBefore: bytes };
    let deleted = 0;
    let freed = 0;
    if (bytes > target) {
      objs.sort((a, b) => a.at - b.at);
      for (const o of objs) {
        if (bytes - freed <= target) break;
        if (this.#isPinned(o.d)) continue;
        // A failed unlink leaves the object to the next gc; say so rather than stop the pass.
        const n = await this.#store.delete(o.d).catch((e: unknown) => {
          this.#log.warn('cache.gc_delete_failed', { digest: o.d, error: e });
          return 0;
        });
        if (n > 0) {
          deleted++;
          freed += n;
        }
        this.#access.delete(o.d);
        this.#dirty.delete(o.d);
      }
    }
    this.#usage = bytes - freed;
    this.#overshoot = Math.max(0, this.#usage - this.#max);
    this.#evicted.objects += deleted;
    this.#evicted.bytes += freed;
    this.#evicted.runs++;
    const r: GcResult = { ...before, deleted, freedBytes: freed, bytesAfter: bytes - freed };
    if (deleted > 0) this.#log.info('cache.gc', { ...r });
    return r;
  }
}
