import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { BufferBlob, type ByteRange, type RandomAccessBlob } from '../../src/core/blob.js';
import { sha256Of } from '../../src/core/digest.js';
import { AbortedError } from '../../src/core/errors.js';
import { alreadyVerified } from '../../src/core/verified.js';
import { readVerifiedChunks, type ChunkRequest } from '../../src/formats/chunk-reader.js';
import { FormatError } from '../../src/formats/errors.js';
import type { ChunkRef } from '../../src/formats/model.js';
import { ChunkCache, type ChunkFetcher } from '../../src/cache/chunk-cache.js';
import { ObjectStore } from '../../src/cache/object-store.js';
import { tempDir, tinyTmpfs, unmount } from './support/tmp.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

/** Counts reads; optionally holds every read until unhold() (to make flights overlap). */
class CountingBlob implements RandomAccessBlob {
  reads = 0;
  readManys = 0;
  #gate: Promise<void> | undefined;
  #open: (() => void) | undefined;
  constructor(readonly inner: RandomAccessBlob) {}
  get size(): number {
    return this.inner.size;
  }
  get name(): string {
    return this.inner.name;
  }
  hold(): void {
    this.#gate = new Promise((r) => (this.#open = r));
  }
  /** Let held reads go (not RandomAccessBlob.release: this blob's buffers are not pooled). */
  unhold(): void {
    this.#open?.();
    this.#gate = undefined;
  }
  async read(offset: number, length: number, signal?: AbortSignal): Promise<Buffer> {
    this.reads++;
    if (this.#gate) await this.#gate;
    signal?.throwIfAborted();
    return this.inner.read(offset, length);
  }
  async readMany(ranges: readonly ByteRange[], signal?: AbortSignal): Promise<Buffer[]> {
    this.readManys++;
    return Promise.all(ranges.map((r) => this.read(r.offset, r.length, signal)));
  }
}

/** An uncompressed "layer": `n` chunks of `size` bytes laid out back to back. */
function layer(n: number, size: number, seed = 1): { blob: Buffer; chunks: ChunkRef[] } {
  const blob = Buffer.alloc(n * size);
  for (let i = 0; i < blob.length; i++) blob[i] = (i * 31 + seed * 7 + (i >> 8)) & 0xff;
  const chunks = Array.from({ length: n }, (_, i): ChunkRef => {
    const data = blob.subarray(i * size, (i + 1) * size);
    return { digest: sha256Of(data), fileOffset: i * size, size, span: { offset: i * size, end: (i + 1) * size, innerOffset: 0 } };
  });
  return { blob, chunks };
}

function fetcherFor(blob: RandomAccessBlob, calls: ChunkRequest[][] = []): ChunkFetcher {
  return (reqs, signal) => {
    calls.push([...reqs]);
    return readVerifiedChunks(blob, { compression: 'none', blobName: blob.name }, reqs, signal);
  };
}

async function store(root?: string): Promise<ObjectStore> {
  const dir = root ?? (await tempDir());
  if (!root) cleanups.push(() => rm(dir, { recursive: true, force: true }));
  return ObjectStore.open({ dir: join(dir, 'objects'), tmpDir: join(dir, 'tmp') });
}

const ctx = { name: 'test-layer' };

describe('ChunkCache', () => {
  it('the memory tier counts the shared slabs its entries are views of: what it keeps alive stays within hotBytes', async () => {
    // A decode worker returns a batch's chunks as views of one shared buffer. A reader that keeps
    // one chunk of every batch hot would otherwise keep every batch's whole slab alive.
    const { blob, chunks } = layer(64, 4096);
    const slabFetcher: ChunkFetcher = async (reqs) => {
      const slab = Buffer.from(new SharedArrayBuffer(64 * 4096));
      return reqs.map((r, i) => {
        const b = slab.subarray(i * 4096, (i + 1) * 4096);
        blob.copy(b, 0, r.chunk.span.offset, r.chunk.span.end);
        return alreadyVerified(b);
      });
    };
    const hotBytes = 4 * 64 * 4096;
    const cache = new ChunkCache({ hotBytes });
    for (let batch = 0; batch < 16; batch++) {
      // each batch brings 4 chunks in a slab of 64 chunks' size; the first chunk of every batch is read again
      const got = await cache.getOrFetch(ctx, chunks.slice((batch * 4) % 64, ((batch * 4) % 64) + 4).map((chunk) => ({ chunk })), slabFetcher);
      expect(got.every((b) => b.buffer.byteLength === 64 * 4096)).toBe(true);
      for (let k = 0; k <= batch; k++) await cache.getOrFetch(ctx, [{ chunk: chunks[(k * 4) % 64]! }], slabFetcher);
      expect(cache.stats.hotBytes).toBeLessThanOrEqual(hotBytes);
    }
    // never more slabs alive through the tier than fit: 4 slabs of 256 KiB
    expect(cache.stats.hotBytes).toBeGreaterThan(hotBytes / 2);
    // the tier still serves correct bytes after all that eviction
    const again = await cache.getOrFetch(ctx, [{ chunk: chunks[60]! }], fetcherFor(new BufferBlob(blob)));
    expect(again[0]!.equals(blob.subarray(60 * 4096, 61 * 4096))).toBe(true);
  });

  it('32 concurrent readers of one cold chunk cause exactly one fetch', async () => {
    const { blob, chunks } = layer(4, 8192);
    const counting = new CountingBlob(new BufferBlob(blob));
    const calls: ChunkRequest[][] = [];
    const cache = new ChunkCache({ store: await store() });
    const req = [{ chunk: chunks[2]! }];
    const results = await Promise.all(Array.from({ length: 32 }, () => cache.getOrFetch(ctx, req, fetcherFor(counting, calls))));
    expect(calls.length).toBe(1);
    expect(counting.reads).toBe(1);
    for (const [b] of results) expect(b).toEqual(blob.subarray(2 * 8192, 3 * 8192));
    expect(cache.stats.misses).toBe(1);
    expect(cache.stats.joined).toBe(31);
    // Now hot: no more fetches.
    await cache.getOrFetch(ctx, req, fetcherFor(counting, calls));
    expect(calls.length).toBe(1);
    expect(cache.stats.hotHits).toBe(1);
    await cache.drain();
  });

  it('fetches all missing chunks of one read in one fetcher call (coalesced readMany)', async () => {
    const { blob, chunks } = layer(6, 4096);
    const counting = new CountingBlob(new BufferBlob(blob));
    const calls: ChunkRequest[][] = [];
    const cache = new ChunkCache({ store: await store() });
    await cache.getOrFetch(ctx, [{ chunk: chunks[1]! }], fetcherFor(counting, calls));
    const out = await cache.getOrFetch(ctx, chunks.slice(0, 4).map((chunk) => ({ chunk })), fetcherFor(counting, calls));
    expect(Buffer.concat(out)).toEqual(blob.subarray(0, 4 * 4096));
    expect(calls.length).toBe(2);
    expect(calls[1]!.map((r) => r.chunk.digest)).toEqual([chunks[0]!, chunks[2]!, chunks[3]!].map((c) => c.digest));
    expect(counting.readManys).toBe(2);
    await cache.drain();
  });

  it("one caller's abort does not cancel the others; the last one leaving aborts the fetch", async () => {
    const { blob, chunks } = layer(2, 4096);
    const counting = new CountingBlob(new BufferBlob(blob));
    const cache = new ChunkCache({ store: await store() });
    counting.hold();
    const ac = new AbortController();
    const a = cache.getOrFetch(ctx, [{ chunk: chunks[0]! }], fetcherFor(counting), { signal: ac.signal });
    const b = cache.getOrFetch(ctx, [{ chunk: chunks[0]! }], fetcherFor(counting));
    ac.abort();
    await expect(a).rejects.toBeInstanceOf(AbortedError);
    counting.unhold();
    expect((await b)[0]).toEqual(blob.subarray(0, 4096));
    expect(counting.reads).toBe(1);

    // Everyone aborts: the shared fetch sees its signal aborted, and a newcomer starts afresh.
    let seen: AbortSignal | undefined;
    let called!: () => void;
    const fetcherCalled = new Promise<void>((r) => (called = r));
    const observing: ChunkFetcher = (reqs, signal) => {
      seen = signal;
      called();
      return new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason)));
    };
    const ac2 = new AbortController();
    const c = cache.getOrFetch(ctx, [{ chunk: chunks[1]! }], observing, { signal: ac2.signal });
    await fetcherCalled;
    ac2.abort();
    await expect(c).rejects.toBeInstanceOf(AbortedError);
    expect(seen?.aborted).toBe(true);
    expect((await cache.getOrFetch(ctx, [{ chunk: chunks[1]! }], fetcherFor(counting)))[0]).toEqual(blob.subarray(4096));
    await cache.drain();
  });

  it('serves from disk after a restart, without fetching', async () => {
    const dir = await tempDir();
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const { blob, chunks } = layer(3, 10_000);
    const c1 = new ChunkCache({ store: await store(dir) });
    await c1.getOrFetch(ctx, chunks.map((chunk) => ({ chunk })), fetcherFor(new BufferBlob(blob)));
    await c1.drain();
    const c2 = new ChunkCache({ store: await store(dir) });
    const dead: ChunkFetcher = () => Promise.reject(new Error('must not fetch'));
    const out = await c2.getOrFetch(ctx, chunks.map((chunk) => ({ chunk })), dead);
    expect(Buffer.concat(out)).toEqual(blob);
    expect(c2.stats.diskHits).toBe(3);
    expect(c2.stats.fetches).toBe(0);
  });

  it('a corrupted blob gives a typed error and caches nothing', async () => {
    const { blob, chunks } = layer(2, 4096);
    const bad = Buffer.from(blob);
    bad[5000] = (bad[5000] ?? 0) ^ 0xff; // inside chunk 1
    const s = await store();
    const cache = new ChunkCache({ store: s });
    const err = await cache.getOrFetch(ctx, chunks.map((chunk) => ({ chunk })), fetcherFor(new BufferBlob(bad))).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FormatError);
    expect((err as FormatError).code).toBe('CHUNK_DIGEST_MISMATCH');
    await cache.drain();
    expect(await s.usage()).toEqual({ objects: 0, bytes: 0 });
    expect(await cache.has(chunks[0]!.digest)).toBe(false);
    expect(await cache.has(chunks[1]!.digest)).toBe(false);
    // A later read from a good blob works (the failure was not memoised).
    expect((await cache.getOrFetch(ctx, [{ chunk: chunks[1]! }], fetcherFor(new BufferBlob(blob))))[0]).toEqual(blob.subarray(4096));
    await cache.drain();
  });

  it('full disk (real 64 KiB tmpfs): the read is still correct, nothing partial is cached', async () => {
    const mnt = await tinyTmpfs('64k');
    if (!mnt) {
      expect.soft(process.getuid?.(), 'tmpfs mount needs root').not.toBe(0);
      return;
    }
    cleanups.push(() => unmount(mnt));
    const s = await store(mnt);
    const { blob, chunks } = layer(1, 200_000);
    const cache = new ChunkCache({ store: s, hotBytes: 1 }); // hot tier too small to hold it
    const [b] = await cache.getOrFetch(ctx, [{ chunk: chunks[0]! }], fetcherFor(new BufferBlob(blob)));
    expect(b).toEqual(blob);
    await cache.drain();
    expect(cache.stats.storeFailures).toBe(1);
    expect(await s.has(chunks[0]!.digest)).toBe(false);
    expect(await readdir(s.tmpDir)).toEqual([]);
    expect(await s.usage()).toEqual({ objects: 0, bytes: 0 });
  });

  it('holes (zeros chunks) are produced without fetching or caching', async () => {
    const size = 1 << 16;
    const z: ChunkRef = { digest: sha256Of(Buffer.alloc(size)), fileOffset: 0, size, zeros: true, span: { offset: 0, end: 0, innerOffset: 0 } };
    const s = await store();
    const cache = new ChunkCache({ store: s });
    const blob = new CountingBlob(new BufferBlob(Buffer.alloc(1)));
    const [b] = await cache.getOrFetch(ctx, [{ chunk: z }], fetcherFor(blob));
    expect(b).toEqual(Buffer.alloc(size));
    expect(blob.reads).toBe(0);
    await cache.drain();
    expect((await s.usage()).objects).toBe(0);
  });
});
