/**
 * The shared-memory buffer pool behind registry range bodies, and the chunk reader giving spans back.
 * Checked: released memory is lent again (and only memory the pool lent, only once), never two live
 * buffers on the same memory, the idle bound, oversize buffers never kept; and readVerifiedChunks
 * releases the spans it fetched only after their decode, with results that do not alias them.
 */
import { createHash, randomBytes } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { BufferBlob, type ByteRange, type RandomAccessBlob } from '../../src/core/blob.js';
import { SharedBufferPool, sizeClass } from '../../src/core/buffer-pool.js';
import type { Digest } from '../../src/core/digest.js';
import { readVerifiedChunks } from '../../src/formats/chunk-reader.js';
import type { ChunkRef } from '../../src/formats/model.js';

const KiB = 1024;

describe('SharedBufferPool', () => {
  it('lends shared memory of the exact length and lends released memory again, once', () => {
    const pool = new SharedBufferPool();
    const a = pool.acquire(100 * KiB);
    expect(a.length).toBe(100 * KiB);
    expect(a.buffer).toBeInstanceOf(SharedArrayBuffer);
    expect(a.buffer.byteLength).toBe(sizeClass(100 * KiB));
    a.fill(7);
    // views of one buffer, twice: given back once
    pool.release([a.subarray(0, 10), a, a.subarray(50)]);
    expect(pool.idleBytes).toBe(sizeClass(100 * KiB));
    const b = pool.acquire(90 * KiB); // same class
    expect(b.buffer).toBe(a.buffer);
    expect(pool.reused).toBe(1);
    // while b is lent, no other acquire gets its memory
    const c = pool.acquire(90 * KiB);
    expect(c.buffer).not.toBe(b.buffer);
    // a second release of memory already given back is ignored: it is not lent twice
    pool.release([a]);
    pool.release([b]);
    pool.release([b]);
    expect(pool.idleBytes).toBe(sizeClass(90 * KiB));
    const d = pool.acquire(90 * KiB);
    const e = pool.acquire(90 * KiB);
    expect(d.buffer).toBe(b.buffer);
    expect(e.buffer).not.toBe(d.buffer);
  });

  it('ignores memory it did not lend, keeps at most maxIdleBytes idle and never keeps oversize buffers', () => {
    const pool = new SharedBufferPool({ maxIdleBytes: 3 * sizeClass(64 * KiB), maxBuffer: 1024 * KiB });
    pool.release([Buffer.alloc(64 * KiB), Buffer.from(new SharedArrayBuffer(64 * KiB))]);
    expect(pool.idleBytes).toBe(0);
    const lent = Array.from({ length: 5 }, () => pool.acquire(64 * KiB));
    pool.release(lent);
    expect(pool.idleBytes).toBe(3 * sizeClass(64 * KiB));
    const big = pool.acquire(2048 * KiB);
    expect(big.length).toBe(2048 * KiB);
    pool.release([big]);
    expect(pool.idleBytes).toBe(3 * sizeClass(64 * KiB));
  });

  it('size classes grow by at most 25 % (plus a page) and cover the request', () => {
    for (const n of [1, 64 * KiB, 64 * KiB + 1, 1000 * KiB, 4 * 1024 * KiB + 17]) {
      const c = sizeClass(n);
      expect(c).toBeGreaterThanOrEqual(n);
      expect(c).toBeLessThanOrEqual(Math.max(64 * KiB, n * 1.25 + 4096));
    }
  });
});

/** A blob whose reads come from a pool and which records what is given back (the registry blob's contract). */
class PooledBlob implements RandomAccessBlob {
  readonly size: number;
  readonly name = 'pooled';
  readonly pool = new SharedBufferPool();
  readonly released: Buffer[] = [];
  readonly #inner: BufferBlob;
  constructor(data: Buffer) {
    this.#inner = new BufferBlob(data);
    this.size = data.length;
  }
  async read(offset: number, length: number): Promise<Buffer> {
    const b = this.pool.acquire(length);
    (await this.#inner.read(offset, length)).copy(b);
    return b;
  }
  async readMany(ranges: readonly ByteRange[]): Promise<Buffer[]> {
    return Promise.all(ranges.map((r) => this.read(r.offset, r.length)));
  }
  release(bufs: readonly Buffer[]): void {
    this.released.push(...bufs);
    this.pool.release(bufs);
  }
}

const sha = (b: Buffer): Digest => `sha256:${createHash('sha256').update(b).digest('hex')}` as Digest;

describe('readVerifiedChunks gives fetched spans back', () => {
  for (const compression of ['gzip', 'none'] as const) {
    it(`${compression}: after decoding, and the verified chunks stay intact when the memory is lent again`, async () => {
      const plain = [randomBytes(70 * KiB), randomBytes(90 * KiB)];
      const spans = plain.map((p) => (compression === 'gzip' ? gzipSync(p) : p));
      const blob = new PooledBlob(Buffer.concat(spans));
      let at = 0;
      const chunks: ChunkRef[] = plain.map((p, i) => {
        const c: ChunkRef = { digest: sha(p), size: p.length, fileOffset: 0, span: { offset: at, end: at + spans[i]!.length, innerOffset: 0 } };
        at += spans[i]!.length;
        return c;
      });
      const got = await readVerifiedChunks(blob, { compression, blobName: 'pooled' }, chunks.map((chunk) => ({ chunk })));
      expect(blob.released.length).toBe(2);
      // the spans' memory is lent again and overwritten: the results must not be views of it
      for (const r of blob.released) expect(got.some((g) => g.buffer === r.buffer)).toBe(false);
      for (const s of spans) blob.pool.acquire(s.length).fill(0xee);
      got.forEach((g, i) => expect(g.equals(plain[i]!)).toBe(true));
    });
  }

  it('a chunk that does not match its digest fails the read; its span is given back all the same (its decode has finished)', async () => {
    const p = randomBytes(10 * KiB);
    const blob = new PooledBlob(Buffer.concat([gzipSync(randomBytes(10 * KiB))]));
    const chunk = { digest: sha(p), size: p.length, fileOffset: 0, span: { offset: 0, end: blob.size, innerOffset: 0 } } satisfies ChunkRef;
    await expect(readVerifiedChunks(blob, { compression: 'gzip', blobName: 'pooled' }, [{ chunk }])).rejects.toMatchObject({ code: 'CHUNK_DIGEST_MISMATCH' });
    expect(blob.released.length).toBe(1);
  });
});
