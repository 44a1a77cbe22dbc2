/**
 * A layer as served under `<root>[/<ref>]/<key>/`: its index (the `diff` tree), the exact `info`
 * bytes, and the two byte paths:
 *
 *  readFile  — a byte range of a regular file: mapped to the chunks covering it, which come from the
 *              ChunkCache (hot → disk → readVerifiedChunks over the blob). Only verified bytes.
 *  readBlob  — the exact compressed blob for the `blob` file (push/save read it sequentially). On the
 *              first read the WHOLE blob is streamed from the source into the object store while being
 *              hashed; it becomes visible only if it hashes to the blob digest, and ranges are then
 *              served from that file. So no unverified byte is ever served from `blob` either.
 *              If the disk is full, blobs up to `memoryBlobLimit` are verified and held in memory
 *              instead; larger ones fail with BLOB_UNAVAILABLE (EIO) until space is freed.
 *
 * The blob (source connection) is opened lazily and only on a miss: after a restart a fully cached
 * layer is served without any network access.
 */
import { raceAbort } from '../core/abort.js';
import type { RandomAccessBlob } from '../core/blob.js';
import { DigestHasher, type Digest } from '../core/digest.js';
import { DigestMismatchError } from '../core/errors.js';
import { alreadyVerified, type VerifiedBytes } from '../core/verified.js';
import { silentLogger, type Logger } from '../core/log.js';
import { readVerifiedChunks, type ChunkRequest } from '../formats/chunk-reader.js';
import { openLayer } from '../formats/open-layer.js';
import type { ChunkDecoder } from '../formats/chunk-decoder.js';
import type { ChunkRef, LayerIndex, LayerNode } from '../formats/model.js';
import type { ChunkCache, ChunkFetcher } from '../cache/chunk-cache.js';
import { CacheError } from '../cache/errors.js';
import type { Eviction } from '../cache/eviction.js';
import type { ObjectStore } from '../cache/object-store.js';
import type { PrefetchScheduler, PrefetchTarget } from '../cache/prefetch.js';
import { IndexError } from './errors.js';
import { buildInfo } from './info.js';
import { firstChunkEndingAfter, ReadAhead, type ReadAheadOptions } from './read-ahead.js';

export interface ServedLayerOptions {
  readonly key: Digest;
  readonly keyKind: 'blob' | 'toc';
  readonly refElem?: string;
  readonly index: LayerIndex;
  readonly blobDigest: Digest;
  readonly blobSize: number;
  /** config.rootfs.diff_ids[i] for this layer. */
  readonly diffId?: Digest;
  readonly annotations?: Readonly<Record<string, string>>;
  readonly chunkCache: ChunkCache;
  /** Where the whole blob is kept for the `blob` file (the chunk object store). */
  readonly blobStore: ObjectStore;
  /** Opens the blob through the source (called lazily, on a miss; the catalog shares and caches it). */
  readonly openBlob: (signal?: AbortSignal) => Promise<RandomAccessBlob>;
  readonly scheduler?: PrefetchScheduler;
  /** Read-ahead for sequential readers (see read-ahead.ts; `{ maxWindow: 0 }` = off). */
  readonly readAhead?: Partial<ReadAheadOptions>;
  readonly eviction?: Eviction;
  /** Largest blob held in memory when it cannot be written to disk (default 64 MiB). */
  readonly memoryBlobLimit?: number;
  /** Where chunk spans are decoded and verified (default: in process). */
  readonly chunkDecoder?: ChunkDecoder;
  /** Size of the sequential reads used to copy the blob (default 4 MiB). */
  readonly blobReadPiece?: number;
  readonly logger?: Logger;
}

export interface ServedLayerStats {
  /** Uncompressed chunk bytes fetched from the source for this layer (this process; holes excluded). */
  fetchedBytes: number;
  /** Bytes returned by readFile. */
  readBytes: number;
  /** Bytes returned by readBlob. */
  blobReadBytes: number;
}

export interface LayerCacheStatus {
  /** Distinct content bytes of the layer (sum of distinct non-hole chunks). */
  readonly contentBytes: number;
  readonly cachedBytes: number;
  /** cachedBytes / contentBytes × 100 (100 for an empty layer). */
  readonly percent: number;
  readonly blobCached: boolean;
}

export class ServedLayer implements PrefetchTarget {
  readonly key: Digest;
  readonly keyKind: 'blob' | 'toc';
  readonly refElem: string | undefined;
  readonly index: LayerIndex;
  /** Exact bytes of the `info` file (stable for the life of the object). */
  readonly info: Buffer;
  readonly blobDigest: Digest;
  readonly blobSize: number;
  /** For logs and cache context: "<key>" or "<refElem>/<key>". */
  readonly name: string;
  readonly #o: ServedLayerOptions;
  readonly #log: Logger;
  readonly #stats: ServedLayerStats = { fetchedBytes: 0, readBytes: 0, blobReadBytes: 0 };
  readonly #fetcher: ChunkFetcher;
  readonly #ahead: ReadAhead;
  #blobFetch: Promise<void> | undefined;
  #refill: Promise<void> | undefined;
  #memBlob: Buffer | undefined;
  /** Why this layer no longer serves bytes (it does not match its blob), once it is known. */
  #quarantine: Error | undefined;
  readonly #onQuarantine: (() => void)[] = [];

  constructor(o: ServedLayerOptions) {
    this.#o = o;
    this.key = o.key;
    this.keyKind = o.keyKind;
    this.refElem = o.refElem;
    this.index = o.index;
    this.blobDigest = o.blobDigest;
    this.blobSize = o.blobSize;
    this.name = o.refElem !== undefined ? `${o.refElem}/${o.key}` : o.key;
    this.#log = (o.logger ?? silentLogger).child({ layer: this.name });
    this.#ahead = new ReadAhead(o.readAhead);
    this.info = buildInfo({
      key: o.key,
      keyKind: o.keyKind,
      index: o.index,
      blobDigest: o.blobDigest,
      blobSize: o.blobSize,
      ...(o.diffId !== undefined ? { diffId: o.diffId } : {}),
      ...(o.annotations !== undefined ? { annotations: o.annotations } : {}),
    });
    const info = { compression: o.index.compression, blobName: o.blobDigest, ...(o.chunkDecoder ? { decoder: o.chunkDecoder } : {}) };
    const plainCompressed = o.index.format === 'tar+gzip' || o.index.format === 'tar+zstd';
    this.#fetcher = async (reqs, signal) => {
      if (plainCompressed && reqs.some((r) => !r.chunk.zeros)) return this.#refillPlain(reqs, signal);
      // Hole (`zeros`) chunks are built here, never fetched: a request made only of holes must not
      // open the source, or a hole would fail to read offline after a restart (ELF padding does).
      const blob = reqs.some((r) => !r.chunk.zeros) ? await o.openBlob(signal) : NO_SOURCE;
      const bufs = await readVerifiedChunks(blob, info, reqs, signal);
      reqs.forEach((r, i) => {
        if (!r.chunk.zeros) this.#stats.fetchedBytes += bufs[i]!.length;
      });
      return bufs;
    };
  }

  /**
   * A plain gzip/zstd layer has no restart points: a chunk missing from the cache (evicted, or a
   * corrupted file) can only be decoded from the blob's start. Instead of that prefix decode per
   * miss, ONE pass over the whole blob puts every piece of the layer back into the object store and
   * returns the requested ones, so later misses find them on disk. Memory stays at one piece at a
   * time. Pieces are stored under the sha256 of their own bytes (content addressed: nothing can be
   * served under a digest it does not have), and the requested ones are returned only after the
   * pass verified the blob digest and diffID. One pass at a time per layer; callers that arrive
   * during a pass wait for it and then read the store.
   */
  async #refillPlain(reqs: readonly ChunkRequest[], signal: AbortSignal): Promise<VerifiedBytes[]> {
    const o = this.#o;
    // blobStore.get hashes each object against its digest (VerifiedBytes). alreadyVerified: zeros are
    // what a plain layer's hole chunk is by construction (its digest was computed from them by the pass)
    const fromStore = async (): Promise<(VerifiedBytes | undefined)[]> =>
      Promise.all(
        reqs.map(async (r) =>
          r.chunk.zeros ? alreadyVerified(Buffer.alloc(r.chunk.size)) : await o.blobStore.get(r.chunk.digest).catch(() => undefined),
        ),
      );
    if (this.#refill) {
      await this.#refill.catch(() => undefined);
      const got = await fromStore();
      if (got.every((b) => b !== undefined)) return got as VerifiedBytes[];
    }
    const wanted = new Map<Digest, Buffer | undefined>();
    for (const r of reqs) if (!r.chunk.zeros) wanted.set(r.chunk.digest, undefined);
    const pass = (async () => {
      const blob = await o.openBlob(signal);
      await openLayer(blob, {
        format: o.index.format,
        descriptor: { digest: o.blobDigest, size: o.blobSize },
        ...(o.diffId !== undefined ? { diffId: o.diffId } : {}),
        signal,
        onPlainChunk: async (chunk, data) => {
          if (wanted.has(chunk.digest)) {
            if (wanted.get(chunk.digest) === undefined) wanted.set(chunk.digest, Buffer.from(data));
            return;
          }
          if (await o.blobStore.has(chunk.digest)) return;
          try {
            if (await o.blobStore.put(chunk.digest, data)) o.eviction?.noteStored(chunk.digest, data.length);
          } catch (e) {
            this.#log.warn('cache.store_failed', { chunk: chunk.digest, error: e });
          }
        },
      });
    })();
    this.#refill = pass;
    try {
      await pass;
    } finally {
      if (this.#refill === pass) this.#refill = undefined;
    }
    // alreadyVerified: the pass computed each piece's digest from its bytes, and the blob digest and
    // diffID matched at its end (openLayer throws otherwise)
    return reqs.map((r) => {
      if (r.chunk.zeros) return alreadyVerified(Buffer.alloc(r.chunk.size));
      const b = wanted.get(r.chunk.digest);
      if (b === undefined) throw new IndexError(
        'LAYER_NOT_SERVABLE',
        `chunk ${r.chunk.digest} is not in the plain layer any more`,
        { layer: this.name, chunk: r.chunk.digest },
      );
      this.#stats.fetchedBytes += b.length;
      return alreadyVerified(b);
    });
  }

  get stats(): ServedLayerStats {
    return { ...this.#stats };
  }

  /**
   * `length` bytes of `node`'s content at `offset` (fewer at EOF; empty past it). Non-regular nodes
   * have no content. The returned Buffer may share memory with the cache: do not modify it.
   */
  /** Stop serving bytes: from now on every read fails (EIO), naming `reason`. */
  quarantine(reason: Error): void {
    if (this.#quarantine) return;
    this.#quarantine = reason;
    const cbs = this.#onQuarantine.splice(0);
    for (const cb of cbs) cb();
  }

  onQuarantine(cb: () => void): void {
    if (this.#quarantine) queueMicrotask(cb);
    else this.#onQuarantine.push(cb);
  }

  get quarantined(): Error | undefined {
    return this.#quarantine;
  }

  #checkQuarantine(): void {
    if (this.#quarantine) {
      throw new IndexError(
        'LAYER_QUARANTINED',
        `layer quarantined: ${this.#quarantine.message}`,
        { layer: this.key, blob: this.blobDigest },
        { cause: this.#quarantine },
      );
    }
  }

  async readFile(node: LayerNode, path: string, offset: number, length: number, signal?: AbortSignal): Promise<Buffer> {
    const parts = await this.readFileParts(node, path, offset, length, signal);
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
  }

  /**
   * readFile's bytes as views of the chunks that hold them, in order: a backend that can send
   * several buffers (the native one) answers a 1 MiB READ of 16 chunks without copying them into
   * one buffer first (that copy, into fresh memory, was 6 % of the daemon's cold read).
   */
  async readFileParts(node: LayerNode, path: string, offset: number, length: number, signal?: AbortSignal): Promise<Buffer[]> {
    this.#checkQuarantine();
    if (node.type !== 'reg' || offset >= node.size || length <= 0) return [];
    const end = Math.min(node.size, offset + length);
    const chunks = chunksCovering(node.chunks, offset, end);
    const reqs: ChunkRequest[] = chunks.map((chunk) => ({ chunk, entry: path }));
    const run = (): Promise<Buffer[]> => this.#o.chunkCache.getOrFetch(this, reqs, this.#fetcher, signal ? { signal } : {});
    // after the demand request is registered (its chunks are in flight now), so read-ahead skips them
    const pending = this.#o.scheduler ? this.#o.scheduler.demand(run) : run();
    this.#readAhead(node, path, offset, end);
    const bufs = await pending;
    this.#stats.readBytes += end - offset;
    return chunks.map((c, i) => bufs[i]!.subarray(Math.max(offset, c.fileOffset) - c.fileOffset, Math.min(end, c.fileOffset + c.size) - c.fileOffset));
  }

  /**
   * Sequential readers arrive 128 KiB at a time (fuse-native's READ size) while zstd:chunked chunks
   * average 64 KiB: fetching only what each READ covers would make one HTTP round trip per READ and
   * leave the link idle while each piece is decoded. ReadAhead keeps a growing window ahead of a
   * sequential reader requested, in pieces that run in parallel; random readers get nothing ahead.
   */
  #readAhead(node: LayerNode, path: string, offset: number, end: number): void {
    const cache = this.#o.chunkCache;
    const pieces = this.#ahead.plan(node, offset, end, (c) => c.zeros === true || cache.isHotOrPending(c.digest));
    for (const piece of pieces) {
      const bytes = piece.reduce((n, c) => n + c.size, 0);
      void cache
        .getOrFetch(this, piece.map((chunk) => ({ chunk, entry: path })), this.#fetcher)
        .catch((e: unknown) => this.#log.debug('read_ahead_failed', { entry: path, error: e }))
        .finally(() => this.#ahead.settle(bytes));
    }
  }

  /** PrefetchTarget: make sure chunks are cached, without displacing the hot tier. */
  async ensureCached(requests: readonly ChunkRequest[], signal: AbortSignal): Promise<number> {
    // a quarantined layer's chunks are dropped from the cache: a prefetch must not put them back
    this.#checkQuarantine();
    return this.#o.chunkCache.ensureCached(this, requests, this.#fetcher, { signal, hot: false });
  }

  /** Bytes `[offset, offset+length)` of the compressed blob (clamped at EOF), verified as a whole. */
  async readBlob(offset: number, length: number, signal?: AbortSignal): Promise<Buffer> {
    this.#checkQuarantine();
    if (offset >= this.blobSize || length <= 0) return Buffer.alloc(0);
    const n = Math.min(length, this.blobSize - offset);
    for (let attempt = 0; attempt < 3; attempt++) {
      if (this.#memBlob) return this.#countBlob(this.#memBlob.subarray(offset, offset + n));
      const b = await this.#o.blobStore.readRange(this.blobDigest, offset, n);
      if (b && b.length === n) {
        this.#o.eviction?.touch(this.blobDigest);
        return this.#countBlob(b);
      }
      // Absent, evicted or corrupt (deleted by readRange): fetch it (once for all readers).
      // The shared fetch ignores callers' signals (one reader leaving must not cancel the others).
      this.#blobFetch ??= this.#fetchWholeBlob().finally(() => {
        this.#blobFetch = undefined;
      });
      await raceAbort(this.#blobFetch, signal, { layer: this.name, blob: this.blobDigest });
    }
    throw new IndexError('BLOB_UNAVAILABLE', 'blob vanished from the cache repeatedly', { layer: this.name, blob: this.blobDigest });
  }

  #countBlob(b: Buffer): Buffer {
    this.#stats.blobReadBytes += b.length;
    return b;
  }

  async #fetchWholeBlob(): Promise<void> {
    const blob = await this.#o.openBlob();
    if (blob.size !== this.blobSize) {
      throw new IndexError('BLOB_UNAVAILABLE', `source blob has ${blob.size} bytes, manifest says ${this.blobSize}`, {
        layer: this.name,
        blob: this.blobDigest,
      });
    }
    const piece = this.#o.blobReadPiece ?? 4 * 1024 * 1024;
    const size = this.blobSize;
    // Up to BLOB_PIECES_AHEAD pieces in flight (parallel connections), handed on in order: the
    // copy runs at the link's rate instead of one round trip per piece.
    async function* pieces(): AsyncIterable<Buffer> {
      const ahead: Promise<Buffer>[] = [];
      let next = 0;
      const fill = (): void => {
        while (ahead.length < BLOB_PIECES_AHEAD && next < size) {
          const p = blob.read(next, Math.min(piece, size - next));
          p.catch(() => undefined); // observed when awaited; a consumer that stops early leaves it
          ahead.push(p);
          next += piece;
        }
      };
      fill();
      while (ahead.length > 0) {
        const b = await ahead.shift()!;
        fill();
        yield b;
      }
    }
    try {
      await this.#o.blobStore.putStream(this.blobDigest, pieces(), size);
      this.#o.eviction?.noteStored(this.blobDigest, size);
      return;
    } catch (e) {
      if (!(e instanceof CacheError && e.code === 'CACHE_NO_SPACE')) throw e;
      this.#log.warn('layer.blob_not_cached', { error: e });
      if (size > (this.#o.memoryBlobLimit ?? 64 * 1024 * 1024)) {
        throw new IndexError('BLOB_UNAVAILABLE', 'cache disk is full and the blob is too large to hold in memory', {
          layer: this.name,
          blob: this.blobDigest,
        }, { cause: e });
      }
    }
    const parts: Buffer[] = [];
    const h = DigestHasher.for(this.blobDigest);
    for await (const p of pieces()) {
      h.update(p);
      parts.push(p);
    }
    const actual = h.digest();
    if (actual !== this.blobDigest) throw new DigestMismatchError('layer blob', this.blobDigest, actual, { layer: this.name, blob: this.blobDigest });
    this.#memBlob = Buffer.concat(parts, size);
  }

  /** How much of the layer's content is cached (one stat per distinct chunk: for `status`, not hot paths). */
  async cacheStatus(): Promise<LayerCacheStatus> {
    const seen = new Map<Digest, number>();
    for (const node of this.index.allNodes()) {
      if (node.type !== 'reg') continue;
      for (const c of node.chunks) if (!c.zeros) seen.set(c.digest, c.size);
    }
    let content = 0;
    let cached = 0;
    for (const [d, size] of seen) {
      content += size;
      if (await this.#o.chunkCache.has(d)) cached += size;
    }
    const blobCached = this.#memBlob !== undefined || (await this.#o.blobStore.has(this.blobDigest));
    return { contentBytes: content, cachedBytes: cached, percent: content === 0 ? 100 : (cached / content) * 100, blobCached };
  }
}

/** Pieces of the compressed blob requested ahead while copying it whole (bounds its memory to 4 pieces). */
const BLOB_PIECES_AHEAD = 4;

/** The blob handed to readVerifiedChunks for hole-only requests: it never reads from it. */
const NO_SOURCE: RandomAccessBlob = {
  size: 0,
  name: 'no source (hole chunks only)',
  read: () => Promise.reject(new Error('hole chunks are never read from a source')),
};

/** Chunks of a file overlapping [start, end) (chunks are sorted and contiguous). */
function chunksCovering(chunks: readonly ChunkRef[], start: number, end: number): ChunkRef[] {
  const out: ChunkRef[] = [];
  for (let i = firstChunkEndingAfter(chunks, start); i < chunks.length && chunks[i]!.fileOffset < end; i++) out.push(chunks[i]!);
  return out;
}
