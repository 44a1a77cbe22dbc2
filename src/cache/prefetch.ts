/**
 * Prefetch after a layer is opened, and a low-priority background fetch of the rest.
 *
 * 1. Landmark prefetch: eStargz producers put the files a workload needs first, before
 *    `.prefetch.landmark`; LayerIndex.prefetchEnd is that blob offset. Chunks whose compressed span
 *    starts before it are fetched right away, in blob order, in batches (one readVerifiedChunks call
 *    per batch, so the blob's readMany coalesces them into few range requests).
 * 2. Background fetch (optional): every other chunk of the layer, through the PrefetchScheduler, which
 *    runs at most `concurrency` background batches and starts none while any on-demand read is in
 *    flight, so FUSE reads never queue behind bulk prefetch.
 * Both go through ChunkCache.ensureCached: already cached chunks are skipped without reading them
 * and fetched chunks go to disk, not into the hot tier. Everything is cancellable (close()).
 */
import type { ChunkRequest } from '../formats/chunk-reader.js';
import type { LayerIndex } from '../formats/model.js';
import { silentLogger, type Logger } from '../core/log.js';
import { AbortedError } from '../core/errors.js';

/** Gate between on-demand reads and background work. */
export class PrefetchScheduler {
  readonly #concurrency: number;
  #demand = 0;
  #running = 0;
  #waiters: (() => void)[] = [];
  readonly #closed = new AbortController();

  constructor(opts: { concurrency?: number } = {}) {
    this.#concurrency = Math.max(1, opts.concurrency ?? 2);
  }

  get demandInFlight(): number {
    return this.#demand;
  }
  get backgroundRunning(): number {
    return this.#running;
  }
  /** Aborted on close(): background work listens to it. */
  get closedSignal(): AbortSignal {
    return this.#closed.signal;
  }

  /** Run an on-demand read; background work waits until no demand read is in flight. */
  async demand<T>(fn: () => Promise<T>): Promise<T> {
    this.#demand++;
    try {
      return await fn();
    } finally {
      this.#demand--;
      this.#wake();
    }
  }

  /** Run a background task once no demand read is in flight and a slot is free. */
  async background<T>(fn: (signal: AbortSignal) => Promise<T>, signal?: AbortSignal): Promise<T> {
    const sig = signal ? AbortSignal.any([signal, this.#closed.signal]) : this.#closed.signal;
    while (this.#demand > 0 || this.#running >= this.#concurrency) {
      sig.throwIfAborted();
      await new Promise<void>((resolve) => {
        const done = (): void => {
          sig.removeEventListener('abort', done);
          resolve();
        };
        this.#waiters.push(done);
        sig.addEventListener('abort', done, { once: true });
      });
    }
    sig.throwIfAborted();
    this.#running++;
    try {
      return await fn(sig);
    } finally {
      this.#running--;
      this.#wake();
    }
  }

  #wake(): void {
    if (this.#demand > 0) return;
    const w = this.#waiters;
    this.#waiters = [];
    for (const f of w) f();
  }

  close(): void {
    this.#closed.abort(new AbortedError());
    this.#wake();
  }
}

/** What the prefetcher needs from a served layer. */
export interface PrefetchTarget {
  readonly name: string;
  readonly index: LayerIndex;
  /** Make sure these chunks are cached (ChunkCache.ensureCached); returns how many were fetched. */
  ensureCached(requests: readonly ChunkRequest[], signal: AbortSignal): Promise<number>;
}

export interface PrefetcherOptions {
  readonly scheduler: PrefetchScheduler;
  /** Fetch the whole layer in the background after the landmark prefetch (default false). */
  readonly background?: boolean;
  /** Largest compressed span per batch, in bytes (default 4 MiB). */
  readonly batchBytes?: number;
  readonly logger?: Logger;
}

export interface PrefetchStats {
  layersStarted: number;
  batchesDone: number;
  chunksFetched: number;
  failures: number;
}

/** Chunk requests of the layer in blob order, deduplicated; only spans starting before `end` if given. */
export function layerChunkRequests(index: LayerIndex, end?: number): ChunkRequest[] {
  const seen = new Set<string>();
  const out: ChunkRequest[] = [];
  for (const [path, node] of index.walk()) {
    if (node.type !== 'reg') continue;
    for (const c of node.chunks) {
      if (c.zeros || seen.has(c.digest)) continue;
      if (end !== undefined && c.span.offset >= end) continue;
      seen.add(c.digest);
      out.push({ chunk: c, entry: path });
    }
  }
  return out.sort((a, b) => a.chunk.span.offset - b.chunk.span.offset || a.chunk.span.innerOffset - b.chunk.span.innerOffset);
}

/** Split blob-ordered requests into batches covering at most `maxBytes` of compressed span each. */
function batchRequests(reqs: readonly ChunkRequest[], maxBytes: number): ChunkRequest[][] {
  const out: ChunkRequest[][] = [];
  let cur: ChunkRequest[] = [];
  let start = 0;
  for (const r of reqs) {
    if (cur.length > 0 && r.chunk.span.end - start > maxBytes) {
      out.push(cur);
      cur = [];
    }
    if (cur.length === 0) start = r.chunk.span.offset;
    cur.push(r);
  }
  if (cur.length > 0) out.push(cur);
  return out;
}

export class Prefetcher {
  readonly #sched: PrefetchScheduler;
  readonly #background: boolean;
  readonly #batchBytes: number;
  readonly #log: Logger;
  readonly #tasks = new Set<Promise<void>>();
  readonly #started = new Set<string>();
  readonly stats: PrefetchStats = { layersStarted: 0, batchesDone: 0, chunksFetched: 0, failures: 0 };

  constructor(opts: PrefetcherOptions) {
    this.#sched = opts.scheduler;
    this.#background = opts.background ?? false;
    this.#batchBytes = opts.batchBytes ?? 4 * 1024 * 1024;
    this.#log = opts.logger ?? silentLogger;
  }

  /** Start prefetching a layer (once per layer name); returns the task (never rejects). */
  start(layer: PrefetchTarget): Promise<void> {
    if (this.#started.has(layer.name) || this.#sched.closedSignal.aborted) return Promise.resolve();
    this.#started.add(layer.name);
    this.stats.layersStarted++;
    const t = this.#run(layer).catch((e: unknown) => {
      if (!this.#sched.closedSignal.aborted) {
        this.stats.failures++;
        this.#log.warn('prefetch.failed', { layer: layer.name, error: e });
      }
    });
    this.#tasks.add(t);
    void t.finally(() => this.#tasks.delete(t));
    return t;
  }

  async #run(layer: PrefetchTarget): Promise<void> {
    const signal = this.#sched.closedSignal;
    const end = layer.index.prefetchEnd;
    if (end !== undefined && end > 0) {
      for (const batch of batchRequests(layerChunkRequests(layer.index, end), this.#batchBytes)) {
        signal.throwIfAborted();
        this.stats.chunksFetched += await layer.ensureCached(batch, signal);
        this.stats.batchesDone++;
      }
    }
    if (!this.#background) return;
    for (const batch of batchRequests(layerChunkRequests(layer.index), this.#batchBytes)) {
      const n = await this.#sched.background((sig) => layer.ensureCached(batch, sig));
      this.stats.chunksFetched += n;
      this.stats.batchesDone++;
    }
  }

  /** Cancel all prefetching and wait for running batches to stop. */
  async close(): Promise<void> {
    this.#sched.close();
    await Promise.all([...this.#tasks]);
  }
}
