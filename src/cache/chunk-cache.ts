/**
 * Two-tier cache of verified chunk bytes, keyed by chunk digest (content addressed, so a chunk
 * shared by several layers is fetched and stored once).
 *
 *  hot  — lru-cache bounded by bytes (DEFAULT_HOT_BYTES) of Buffers;
 *  cold — the ObjectStore on disk (re-verified on every read, see object-store.ts);
 *  miss — the caller's fetcher (readVerifiedChunks over the layer's blob), which returns verified bytes.
 *
 * Single flight: the first caller to miss a digest registers a flight for it *synchronously*, before
 * any await, so every later caller of the same digest joins that flight: 32 concurrent readers of one
 * cold chunk cause one disk read or one fetch. All chunks a request misses are looked up on disk and
 * then fetched with ONE fetcher call (readVerifiedChunks groups them and the blob's readMany coalesces
 * neighbouring ranges).
 *
 * Cancellation: a flight runs under its own AbortController. A caller's AbortSignal only detaches
 * that caller (its promise rejects with AbortedError at once); the fetch is aborted when every caller
 * waiting on it has gone, and the aborted flight is unregistered at that moment so that newcomers start
 * a fresh one instead of inheriting the abort.
 *
 * Served only once on disk: a flight resolves when its chunks are verified AND written to the object
 * store (io worker threads, object-io.ts; renamed into place, not fsynced). A reply that left the
 * daemon before the write would be lost by a kill -9 right after it, and "every byte ever served is
 * served again after a restart, offline" would not hold (a power cut can still lose unsynced pages:
 * docs/security.md). drain() and `pendingStores` let a shutdown or a test wait for the writes.
 * Storing is best effort: a failed put (full disk, I/O error) is logged and counted, the verified
 * bytes are still returned. Returned Buffers may be shared with the hot tier: callers must not
 * modify them.
 */
import { LRUCache } from 'lru-cache';
import { raceAbort } from '../core/abort.js';
import type { Digest } from '../core/digest.js';
import { AbortedError } from '../core/errors.js';
import type { VerifiedBytes } from '../core/verified.js';
import { silentLogger, type Logger } from '../core/log.js';
import type { ChunkRequest } from '../formats/chunk-reader.js';
import type { Eviction } from './eviction.js';
import type { ObjectStore } from './object-store.js';

export type { ChunkRequest } from '../formats/chunk-reader.js';

/** Identifies the layer a request belongs to (logs and error context only; the cache is global). */
export interface ChunkLayerContext {
  readonly name: string;
}

/** Returns verified bytes for every request, in order (readVerifiedChunks semantics). */
export type ChunkFetcher = (requests: readonly ChunkRequest[], signal: AbortSignal) => Promise<VerifiedBytes[]>;

export interface ChunkCacheOptions {
  /** Cold tier. Omit for a memory-only cache. */
  readonly store?: ObjectStore;
  /** Access tracking + size limit for the cold tier. */
  readonly eviction?: Eviction;
  /** Hot tier size in bytes (default DEFAULT_HOT_BYTES). */
  readonly hotBytes?: number;
  readonly logger?: Logger;
}

export interface GetOptions {
  readonly signal?: AbortSignal;
  /** Background reads (prefetch) do not displace the hot tier (default true). */
  readonly hot?: boolean;
}

export interface ChunkCacheStats {
  /** Chunks served from memory. */
  hotHits: number;
  /** Chunks served from disk. */
  diskHits: number;
  /** Chunks that had to be fetched (joining an existing flight does not count again). */
  misses: number;
  /** Requests that joined a flight started by another caller. */
  joined: number;
  /** Fetcher calls. */
  fetches: number;
  /** Verified uncompressed bytes returned by fetchers. */
  bytesFetched: number;
  /** Failed stores (disk full, I/O); reads were still served. */
  storeFailures: number;
  hotBytes: number;
  hotEntries: number;
  /** Chunks being fetched right now, and fetched chunks whose disk write has not finished. */
  inFlight: number;
  pendingStores: number;
}

interface Batch {
  readonly controller: AbortController;
  waiters: number;
  readonly digests: Digest[];
}

interface Flight {
  readonly promise: Promise<Buffer>;
  readonly batch: Batch;
}

/**
 * The memory tier's default size. Every served chunk is on disk before it is served, so this tier only
 * saves a pread; kept small so the daemon stays inside its memory budget (docs/robustness.md).
 */
export const DEFAULT_HOT_BYTES = 32 * 1024 * 1024;

export class ChunkCache {
  readonly #store: ObjectStore | undefined;
  readonly #eviction: Eviction | undefined;
  readonly #hot: LRUCache<string, Buffer>;
  readonly #hotMax: number;
  readonly #slabs = new SlabAccount();
  readonly #log: Logger;
  readonly #flights = new Map<Digest, Flight>();
  readonly #pending = new Set<Promise<void>>();
  readonly #stats = { hotHits: 0, diskHits: 0, misses: 0, joined: 0, fetches: 0, bytesFetched: 0, storeFailures: 0 };

  constructor(opts: ChunkCacheOptions = {}) {
    this.#store = opts.store;
    this.#eviction = opts.eviction;
    this.#log = opts.logger ?? silentLogger;
    const max = Math.max(1, opts.hotBytes ?? DEFAULT_HOT_BYTES);
    this.#hotMax = max;
    this.#hot = new LRUCache<string, Buffer>({
      maxSize: max,
      maxEntrySize: max,
      sizeCalculation: (b) => Math.max(1, b.length),
      dispose: (b) => this.#slabs.remove(b),
    });
  }

  get stats(): ChunkCacheStats {
    return {
      ...this.#stats,
      hotBytes: this.#hot.calculatedSize + this.#slabs.extra,
      hotEntries: this.#hot.size,
      inFlight: this.#flights.size,
      pendingStores: this.#pending.size,
    };
  }

  /**
   * Into the memory tier. Chunks a decode worker returns are views of one shared slab per batch
   * (chunk-decoder.ts): an entry keeps its whole slab alive, so the bound counts what the entries'
   * slabs hold beyond the entries themselves, and evicts the oldest entries until that fits too.
   */
  #hotSet(d: Digest, b: Buffer): void {
    if (this.#hot.peek(d) === b) return;
    this.#slabs.add(b);
    this.#hot.set(d, b);
    if (this.#hot.peek(d) !== b) this.#slabs.remove(b); // refused (larger than the tier)
    while (this.#hot.size > 0 && this.#hot.calculatedSize + this.#slabs.extra > this.#hotMax) this.#hot.pop();
  }

  /** Wait for background stores to finish (shutdown, tests). */
  async drain(): Promise<void> {
    // Fetches in flight (e.g. read-ahead nobody waits for) end in stores too: wait for both.
    while (this.#pending.size > 0 || this.#flights.size > 0) await this.settled();
  }

  /**
   * Wait, once, for the fetches and stores in flight now (not for ones started later, unlike drain,
   * which a busy store might never finish): a quarantine deletes a layer's objects only after the
   * writes already under way have landed, or they would land after the delete and stay.
   */
  async settled(): Promise<void> {
    await Promise.all([...this.#pending, ...[...this.#flights.values()].map((f) => f.promise.catch(() => undefined))]);
    // a flight that just ended may have handed its write to #pending
    await Promise.all([...this.#pending]);
  }

  /** Drop memory-tier entries `keep` rejects (`gc --all`: the cache is emptied of layers not in use). */
  dropHot(keep: (d: Digest) => boolean): number {
    let n = 0;
    for (const d of [...this.#hot.keys()]) {
      if (!keep(d as Digest)) {
        this.#hot.delete(d);
        n++;
      }
    }
    return n;
  }

  /** Drop the memory-tier entries of `digests` (a quarantined layer's chunks). */
  forget(digests: ReadonlySet<Digest>): number {
    return this.dropHot((d) => !digests.has(d));
  }

  /** Whether a chunk is in memory or already being fetched (synchronous: for read-ahead decisions). */
  isHotOrPending(d: Digest): boolean {
    return this.#hot.has(d) || this.#flights.has(d);
  }

  /** Whether a chunk is cached (memory or disk) without reading it. */
  async has(d: Digest): Promise<boolean> {
    if (this.#hot.has(d)) return true;
    return this.#store ? this.#store.has(d) : false;
  }

  /**
   * Verified bytes of every requested chunk, in request order. `zeros` chunks (holes) bypass the
   * cache: they cost nothing to produce and would only waste space.
   */
  async getOrFetch(layer: ChunkLayerContext, requests: readonly ChunkRequest[], fetcher: ChunkFetcher, opts: GetOptions = {}): Promise<Buffer[]> {
    const signal = opts.signal;
    signal?.throwIfAborted();
    const hot = opts.hot ?? true;
    const out = new Array<Buffer | Promise<Buffer>>(requests.length);
    const cold = new Map<Digest, ChunkRequest>();
    const zeroIdx: number[] = [];
    const joinedBatches = new Set<Batch>();
    requests.forEach((r, i) => {
      const d = r.chunk.digest;
      if (r.chunk.zeros) {
        zeroIdx.push(i);
        return;
      }
      const b = this.#hot.get(d);
      if (b) {
        this.#stats.hotHits++;
        this.#eviction?.touch(d);
        out[i] = b;
        return;
      }
      const f = this.#flights.get(d);
      if (f) {
        if (!cold.has(d)) {
          this.#stats.joined++;
          joinedBatches.add(f.batch);
        }
        out[i] = f.promise;
        return;
      }
      cold.set(d, r);
    });
    if (cold.size > 0) {
      const batch = this.#startBatch(layer, [...cold.values()], fetcher, hot);
      joinedBatches.add(batch);
      requests.forEach((r, i) => {
        if (out[i] === undefined && !r.chunk.zeros) out[i] = this.#flights.get(r.chunk.digest)!.promise;
      });
    }
    if (zeroIdx.length > 0) {
      const zr = zeroIdx.map((i) => requests[i]!);
      const bufs = fetcher(zr, signal ?? new AbortController().signal);
      zeroIdx.forEach((i, k) => {
        out[i] = bufs.then((b) => b[k]!);
      });
    }
    for (const b of joinedBatches) b.waiters++;
    const all = Promise.all(out);
    try {
      return await raceAbort(all, signal, { layer: layer.name });
    } finally {
      for (const b of joinedBatches) {
        b.waiters--;
        if (b.waiters === 0 && signal?.aborted) this.#abortBatch(b);
      }
      if (signal?.aborted) all.catch(() => undefined);
    }
  }

  /** Make sure chunks are on disk (prefetch/background): cached ones are skipped without being read. */
  async ensureCached(layer: ChunkLayerContext, requests: readonly ChunkRequest[], fetcher: ChunkFetcher, opts: GetOptions = {}): Promise<number> {
    const missing: ChunkRequest[] = [];
    const seen = new Set<Digest>();
    for (const r of requests) {
      if (r.chunk.zeros || seen.has(r.chunk.digest)) continue;
      seen.add(r.chunk.digest);
      if (!(await this.has(r.chunk.digest))) missing.push(r);
    }
    if (missing.length > 0) await this.getOrFetch(layer, missing, fetcher, { ...opts, hot: opts.hot ?? false });
    return missing.length;
  }

  #startBatch(layer: ChunkLayerContext, reqs: ChunkRequest[], fetcher: ChunkFetcher, hot: boolean): Batch {
    const batch: Batch = { controller: new AbortController(), waiters: 0, digests: reqs.map((r) => r.chunk.digest) };
    const sig = batch.controller.signal;
    const work = this.#runBatch(layer, reqs, fetcher, sig, hot);
    work.catch(() => undefined);
    // registered until the chunks are on disk (or the batch failed), not merely until they are served
    const settled = work.then((w) => w.stored);
    for (const r of reqs) {
      const d = r.chunk.digest;
      const promise = work.then((w) => w.result.get(d)!);
      promise.catch(() => undefined);
      const flight: Flight = { promise, batch };
      this.#flights.set(d, flight);
      void settled
        .finally(() => {
          if (this.#flights.get(d) === flight) this.#flights.delete(d);
        })
        .catch(() => undefined);
    }
    return batch;
  }

  #abortBatch(b: Batch): void {
    for (const d of b.digests) if (this.#flights.get(d)?.batch === b) this.#flights.delete(d);
    b.controller.abort(new AbortedError());
  }

  /** The batch's verified bytes, and when their write to the object store has finished. */
  async #runBatch(
    layer: ChunkLayerContext,
    reqs: ChunkRequest[],
    fetcher: ChunkFetcher,
    signal: AbortSignal,
    hot: boolean,
  ): Promise<{ result: Map<Digest, Buffer>; stored: Promise<void> }> {
    const result = new Map<Digest, Buffer>();
    let missing = reqs;
    if (this.#store) {
      // one batch for all of them (file calls and re-hashing off the event loop: object-io.ts)
      const found = await this.#store.getMany(reqs.map((r) => r.chunk.digest));
      missing = [];
      reqs.forEach((r, i) => {
        const b = found[i];
        if (b instanceof Error) this.#log.warn('cache.read_failed', { layer: layer.name, chunk: r.chunk.digest, error: b });
        if (b instanceof Buffer) {
          this.#stats.diskHits++;
          this.#eviction?.touch(r.chunk.digest);
          if (hot) this.#hotSet(r.chunk.digest, b);
          result.set(r.chunk.digest, b);
        } else missing.push(r);
      });
    }
    if (missing.length === 0) return { result, stored: Promise.resolve() };
    signal.throwIfAborted();
    this.#stats.misses += missing.length;
    this.#stats.fetches++;
    const bufs = await fetcher(missing, signal);
    missing.forEach((r, i) => {
      const b = bufs[i]!;
      this.#stats.bytesFetched += b.length;
      if (hot) this.#hotSet(r.chunk.digest, b);
      result.set(r.chunk.digest, b);
    });
    // Served only once written (see the file comment); #storeAll never rejects (failures are
    // counted and warned). A failed store (full disk, I/O error) leaves the verified bytes served.
    const storing = this.#storeAll(layer, missing, bufs).finally(() => this.#pending.delete(storing));
    this.#pending.add(storing);
    await storing;
    return { result, stored: storing };
  }

  async #storeAll(layer: ChunkLayerContext, reqs: ChunkRequest[], bufs: VerifiedBytes[]): Promise<void> {
    const store = this.#store;
    if (!store) return;
    // One batch: the writes run off the event loop (object-io.ts) and nothing is hashed again (the
    // fetcher's VerifiedBytes were checked by the decoder).
    let got: Array<boolean | Error>;
    try {
      got = await store.putVerifiedMany(reqs.map((r, i) => ({ digest: r.chunk.digest, data: bufs[i]! })));
    } catch (e) {
      got = reqs.map(() => (e instanceof Error ? e : new Error(String(e))));
    }
    let warned = false;
    got.forEach((r, i) => {
      const d = reqs[i]!.chunk.digest;
      if (r === true) this.#eviction?.noteStored(d, bufs[i]!.length);
      else if (r instanceof Error) {
        this.#stats.storeFailures++;
        // one line per batch: a full disk fails every chunk of it the same way
        if (!warned) this.#log.warn('cache.store_failed', { layer: layer.name, chunk: d, error: r, ...(got.length > 1 ? { batch: got.length } : {}) });
        warned = true;
      }
    });
  }
}

/** Bytes of the shared buffers hot entries are views of, beyond the entries' own bytes. */
class SlabAccount {
  readonly #slabs = new Map<ArrayBufferLike, { live: number; views: number }>();
  extra = 0;

  add(b: Buffer): void {
    if (b.byteLength === b.buffer.byteLength) return; // a buffer of its own
    let s = this.#slabs.get(b.buffer);
    if (!s) {
      this.#slabs.set(b.buffer, (s = { live: 0, views: 0 }));
      this.extra += b.buffer.byteLength;
    }
    s.live += b.byteLength;
    s.views++;
    this.extra -= b.byteLength;
  }

  remove(b: Buffer): void {
    const s = this.#slabs.get(b.buffer);
    if (!s) return;
    s.live -= b.byteLength;
    this.extra += b.byteLength;
    if (--s.views === 0) {
      this.#slabs.delete(b.buffer);
      this.extra -= b.buffer.byteLength;
    }
  }
}
