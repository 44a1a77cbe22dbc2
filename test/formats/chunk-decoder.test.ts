/**
 * Decode-and-verify in worker threads (ChunkDecoderPool). Workers only run from compiled code, so
 * this test loads the modules from dist/ (built first when src/ is newer) and checks that the pool
 * gives exactly the in-process answers: the same bytes in request order, and for a corrupt chunk in
 * the middle of many spans decoded in parallel the same typed error naming that chunk — with nothing
 * of the failed request cached.
 */
import { createHash, randomBytes } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compress as zstdCompress } from 'zstd-napi';
import { ensureBuilt } from '../e2e/store.js';

type Mod = {
  pool: typeof import('../../src/formats/chunk-decoder.js');
  reader: typeof import('../../src/formats/chunk-reader.js');
  blob: typeof import('../../src/core/blob.js');
  cache: typeof import('../../src/cache/chunk-cache.js');
};
let m: Mod;
let pool: import('../../src/formats/chunk-decoder.js').ChunkDecoderPool;

beforeAll(async () => {
  await ensureBuilt();
  const dist = (p: string): string => new URL(`../../dist/${p}`, import.meta.url).href;
  m = {
    pool: await import(dist('formats/chunk-decoder.js')),
    reader: await import(dist('formats/chunk-reader.js')),
    blob: await import(dist('core/blob.js')),
    cache: await import(dist('cache/chunk-cache.js')),
  };
  expect(m.pool.ChunkDecoderPool.available).toBe(true);
  pool = new m.pool.ChunkDecoderPool(2);
});

afterAll(async () => {
  await pool?.close();
});

const sha = (b: Uint8Array): string => 'sha256:' + createHash('sha256').update(b).digest('hex');

/** N chunks of `size` bytes, each its own frame/member, laid out back to back. */
function layout(n: number, size: number, compression: 'zstd' | 'gzip') {
  const plain = Array.from({ length: n }, (_, i) => (i % 3 === 0 ? Buffer.alloc(size, i) : randomBytes(size)));
  const frames = plain.map((p) => (compression === 'zstd' ? Buffer.from(zstdCompress(p)) : gzipSync(p)));
  let off = 0;
  const chunks = frames.map((f, i) => {
    const c = { digest: sha(plain[i]!), fileOffset: i * size, size, span: { offset: off, end: off + f.length, innerOffset: 0 } };
    off += f.length;
    return c;
  });
  return { plain, frames, chunks, blob: Buffer.concat(frames) };
}

describe('ChunkDecoderPool (worker threads)', () => {
  for (const compression of ['zstd', 'gzip'] as const) {
    it(`${compression}: 64 spans decoded in parallel give the in-process bytes, in request order`, async () => {
      const l = layout(64, 40_000, compression);
      const blob = new m.blob.BufferBlob(l.blob, 'test-blob');
      const reqs = l.chunks.map((chunk, i) => ({ chunk, entry: `f${i}` })).reverse();
      const got = await m.reader.readVerifiedChunks(blob as never, { compression, blobName: 'test-blob', decoder: pool }, reqs as never);
      expect(got.map((b) => sha(b))).toEqual(reqs.map((r) => r.chunk.digest));
      const inProc = await m.reader.readVerifiedChunks(blob as never, { compression, blobName: 'test-blob' }, reqs as never);
      expect(got.every((b, i) => b.equals(inProc[i]!))).toBe(true);
    });

    it(`${compression}: a corrupt chunk in the middle of a parallel batch → typed error naming it; nothing of the batch cached`, async () => {
      const l = layout(48, 30_000, compression);
      const bad = 23;
      // corrupt bytes inside the frame (past its header): either the decoder or the hash must catch it
      const corrupt = Buffer.from(l.blob);
      const s = l.chunks[bad]!.span;
      for (let k = s.offset + 20; k < s.end - 8; k += 97) corrupt[k]! ^= 0x5a;
      const blob = new m.blob.BufferBlob(corrupt, 'test-blob');
      const info = { compression, blobName: 'test-blob', decoder: pool };
      const reqs = l.chunks.map((chunk, i) => ({ chunk, entry: `f${i}` }));
      const cache = new m.cache.ChunkCache();
      const fetcher = (rs: readonly unknown[], signal: AbortSignal) => m.reader.readVerifiedChunks(blob as never, info, rs as never, signal);
      const err = await cache.getOrFetch({ name: 'layer' }, reqs as never, fetcher as never).then(
        () => undefined,
        (e: unknown) => e as { code: string; context: { chunk?: string; entry?: string } },
      );
      expect(err).toBeDefined();
      expect(['CHUNK_DIGEST_MISMATCH', 'DECOMPRESS_FAILED']).toContain(err!.code);
      expect(err!.context.chunk).toBe(l.chunks[bad]!.digest);
      expect(err!.context.entry).toBe(`f${bad}`);
      for (const c of l.chunks) expect(await cache.has(c.digest as never)).toBe(false);
      // the intact chunks still read correctly one by one, the corrupt one keeps failing
      const ok = await cache.getOrFetch({ name: 'layer' }, [reqs[bad + 1]!] as never, fetcher as never);
      expect(ok[0]!.equals(l.plain[bad + 1]!)).toBe(true);
      await expect(cache.getOrFetch({ name: 'layer' }, [reqs[bad]!] as never, fetcher as never)).rejects.toMatchObject({ context: { chunk: l.chunks[bad]!.digest } });
      expect(await cache.has(l.chunks[bad]!.digest as never)).toBe(false);
    });
  }

  it('several chunks inside one span (eStargz innerOffset) come out as separate verified buffers', async () => {
    const parts = [randomBytes(10_000), randomBytes(5_000), Buffer.alloc(7_000, 1)];
    const member = gzipSync(Buffer.concat(parts));
    let inner = 0;
    const chunks = parts.map((p, i) => {
      const c = { digest: sha(p), fileOffset: inner, size: p.length, span: { offset: 0, end: member.length, innerOffset: inner } };
      inner += p.length;
      return { chunk: c, entry: `p${i}` };
    });
    const got = await m.reader.readVerifiedChunks(new m.blob.BufferBlob(member) as never, { compression: 'gzip', blobName: 'b', decoder: pool }, chunks as never);
    expect(got.map((b, i) => b.equals(parts[i]!))).toEqual([true, true, true]);
  });
});
