/**
 * A layer's resolution reads its head, footer, TOC and tar-split through ONE request where the
 * descriptor tells where they are (formats/read-hints.ts + core/prefetched-blob.ts): counted here
 * on the blob underneath, with fixtures from the project's own writers. The hints change only
 * what is fetched up front: the same index comes out, and a lying annotation is refused as before.
 */
import { describe, expect, it } from 'vitest';
import { BufferBlob, type ByteRange, type RandomAccessBlob } from '../../src/core/blob.js';
import { PrefetchedBlob } from '../../src/core/prefetched-blob.js';
import { DEFAULT_LIMITS } from '../../src/core/limits.js';
import { parseDigest, type Digest } from '../../src/core/digest.js';
import { STARGZ_TOC_DIGEST_ANNOTATION } from '../../src/formats/constants.js';
import { openLayer } from '../../src/formats/open-layer.js';
import { tocReadHints } from '../../src/formats/read-hints.js';
import type { LayerIndex } from '../../src/formats/model.js';
import { buildEStargz } from '../helpers/writers/estargz.js';
import { buildZstdChunked, pseudoRandomBytes, zstdChunkedSampleEntries } from '../helpers/writers/zstd-chunked.js';

/** Counts the requests made of a blob (a readMany is one request, as a multi-range GET is). */
class CountingBlob implements RandomAccessBlob {
  readonly size: number;
  readonly name = 'counting';
  requests: ByteRange[][] = [];
  fail = false;
  constructor(readonly inner: BufferBlob) {
    this.size = inner.size;
  }
  async read(offset: number, length: number): Promise<Buffer> {
    this.requests.push([{ offset, length }]);
    if (this.fail) throw new Error('registry down');
    return this.inner.read(offset, length);
  }
  async readMany(ranges: readonly ByteRange[]): Promise<Buffer[]> {
    this.requests.push([...ranges]);
    if (this.fail) throw new Error('registry down');
    return Promise.all(ranges.map((r) => this.inner.read(r.offset, r.length)));
  }
}

const paths = (i: LayerIndex): string[] => [...i.allNodes()].map((n) => `${n.type} ${n.size}`).sort();

async function openBoth(blob: Buffer, annotations: Record<string, string>, digest: Digest): Promise<{ direct: LayerIndex; counted: CountingBlob; hinted: LayerIndex }> {
  const descriptor = { digest, size: blob.length, annotations };
  const direct = (await openLayer(new BufferBlob(blob), { descriptor })).index;
  const counted = new CountingBlob(new BufferBlob(blob));
  const hinted = (await openLayer(new PrefetchedBlob(counted, tocReadHints({ size: blob.length, annotations }, DEFAULT_LIMITS)), { descriptor })).index;
  return { direct, counted, hinted };
}

describe('resolution reads (read hints + prefetched blob)', () => {
  it('zstd:chunked with position annotations: one request for head, TOC, tar-split and footer', async () => {
    const w = buildZstdChunked(zstdChunkedSampleEntries(), { chunkSize: 32 * 1024 });
    const { direct, counted, hinted } = await openBoth(w.blob, w.annotations, parseDigest(w.blobDigest));
    expect(counted.requests).toHaveLength(1);
    const tail = counted.requests[0]!.at(-1)!;
    expect(tail.offset + tail.length).toBe(w.blob.length);
    expect(tail.offset).toBe(Math.min(w.manifestOffset, w.tarSplitOffset!) - 8);
    expect(paths(hinted)).toEqual(paths(direct));
    expect(hinted.tocDigest).toBe(w.tocDigest);
  });

  it('eStargz: head and the speculative tail in one request when the TOC fits in it', async () => {
    const e = buildEStargz([
      { name: 'a/', type: 'dir' },
      { name: 'a/f', type: 'reg', data: pseudoRandomBytes(300_000) },
      { name: 'b', type: 'reg', data: Buffer.from('hello') },
    ]);
    const { direct, counted, hinted } = await openBoth(e.blob, { [STARGZ_TOC_DIGEST_ANNOTATION]: e.tocDigest }, e.blobDigest);
    expect(counted.requests).toHaveLength(1);
    expect(paths(hinted)).toEqual(paths(direct));
  });

  it('a lying manifest-position annotation is refused as without hints (the footer disagrees)', async () => {
    const w = buildZstdChunked(zstdChunkedSampleEntries());
    const key = 'io.github.containers.zstd-chunked.manifest-position';
    const [off, ...rest] = w.annotations[key]!.split(':');
    const annotations = { ...w.annotations, [key]: [Number(off) - 16, ...rest].join(':') };
    const descriptor = { digest: parseDigest(w.blobDigest), size: w.blob.length, annotations };
    const plain = openLayer(new BufferBlob(w.blob), { descriptor });
    const hinted = openLayer(new PrefetchedBlob(new CountingBlob(new BufferBlob(w.blob)), tocReadHints({ size: w.blob.length, annotations }, DEFAULT_LIMITS)), { descriptor });
    await expect(plain).rejects.toMatchObject({ code: 'FORMAT_CONFLICT' });
    await expect(hinted).rejects.toMatchObject({ code: 'FORMAT_CONFLICT' });
  });

  it('plain layers get no hints; absurd positions fetch only the footer', () => {
    expect(tocReadHints({ size: 1000, annotations: {} }, DEFAULT_LIMITS)).toEqual([]);
    const ann = { 'io.github.containers.zstd-chunked.manifest-checksum': 'sha256:' + '0'.repeat(64), 'io.github.containers.zstd-chunked.manifest-position': '8:999999999999:1:1' };
    expect(tocReadHints({ size: 10_000_000_000, annotations: ann }, { maxTocBytes: 1024 })).toEqual([
      { offset: 0, length: 8 },
      { offset: 10_000_000_000 - 72, length: 72 },
    ]);
  });

  it('a failed prefetch sends every read to the blob; reads outside the ranges pass through; hits are copies', async () => {
    const data = pseudoRandomBytes(4096);
    const failing = new CountingBlob(new BufferBlob(data));
    failing.fail = true;
    const p = new PrefetchedBlob(failing, [{ offset: 0, length: 100 }]);
    failing.fail = false;
    // the constructor's request failed (fail was set while it ran synchronously)
    expect((await p.read(10, 5)).equals(data.subarray(10, 15))).toBe(true);
    expect(failing.requests).toHaveLength(2);

    const counted = new CountingBlob(new BufferBlob(data));
    const q = new PrefetchedBlob(counted, [{ offset: 1000, length: 1000 }]);
    const a = await q.read(1100, 10);
    a.fill(0);
    expect((await q.read(1100, 10)).equals(data.subarray(1100, 1110))).toBe(true);
    const [x, y] = await q.readMany([{ offset: 1500, length: 4 }, { offset: 3000, length: 4 }]);
    expect(x!.equals(data.subarray(1500, 1504))).toBe(true);
    expect(y!.equals(data.subarray(3000, 3004))).toBe(true);
    expect(counted.requests).toEqual([[{ offset: 1000, length: 1000 }], [{ offset: 3000, length: 4 }]]);
  });
});
