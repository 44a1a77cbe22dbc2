/**
 * Indexes built in the capped worker thread (formats/index-worker.ts), as the daemon builds them.
 * Workers only start from compiled code, so the modules come from dist/ (built first when src/ is
 * newer). Checked against the in-process build of the same blob: the same index (every node, name
 * and chunk), a record that loads back to it, a plain layer's pieces handed back with their bytes,
 * typed errors, and a layer whose build does not fit the heap cap refused with TOC_TOO_LARGE while
 * this process lives on.
 */
import { gzipSync } from 'node:zlib';
import { beforeAll, describe, expect, it } from 'vitest';
import type { Digest } from '../../src/core/digest.js';
import type { OpenLayerOptions } from '../../src/formats/layer-reader.js';
import type { LayerIndex } from '../../src/formats/model.js';
import { ensureBuilt } from '../e2e/store.js';
import { manyEntriesLayer } from '../helpers/many-entries.js';
import { buildEStargz, sampleEntries } from '../helpers/writers/estargz.js';
import { buildTar } from '../helpers/writers/tar.js';
import { buildZstdChunked } from '../helpers/writers/zstd-chunked.js';

interface Mods {
  worker: typeof import('../../src/formats/index-worker.js');
  open: typeof import('../../src/formats/open-layer.js');
  blob: typeof import('../../src/core/blob.js');
  limits: typeof import('../../src/core/limits.js');
  errors: typeof import('../../src/formats/errors.js');
}
let m: Mods;

beforeAll(async () => {
  await ensureBuilt();
  const dist = (p: string): string => new URL(`../../dist/${p}`, import.meta.url).href;
  m = {
    worker: await import(dist('formats/index-worker.js')),
    open: await import(dist('formats/open-layer.js')),
    blob: await import(dist('core/blob.js')),
    limits: await import(dist('core/limits.js')),
    errors: await import(dist('formats/errors.js')),
  };
}, 300_000);

/** Every path with its node's attributes and chunks: two indexes are the same view when these are equal. */
function snapshot(index: LayerIndex): unknown[] {
  const out: unknown[] = [];
  for (const [path, n] of index.walk()) {
    out.push([path, n.ino, n.type, n.mode, n.uid, n.gid, n.size, n.mtimeSec, n.nlink, n.linkTarget, n.digest, [...n.xattrs].map(([k, v]) => [k, v.toString('hex')]), n.chunks]);
  }
  return out;
}

describe('index worker', () => {
  const entries = sampleEntries();
  const est = buildEStargz(entries);
  const zst = buildZstdChunked(entries);
  const plain = gzipSync(buildTar(entries));
  const cases: [string, Buffer, OpenLayerOptions][] = [
    ['eStargz', est.blob, { expectedTocDigest: est.tocDigest }],
    ['zstd:chunked', zst.blob, { expectedTocDigest: zst.tocDigest as Digest, descriptor: { mediaType: 'application/vnd.oci.image.layer.v1.tar+zstd' } }],
    ['plain tar+gzip', plain, {}],
  ];

  it.each(cases)('%s: the worker builds the same index as in-process, and its record loads back to it', async (_name, bytes, options) => {
    expect(m.worker.IndexWorkers.available).toBe(true);
    const workers = new m.worker.IndexWorkers();
    const blob = new m.blob.BufferBlob(bytes, 'test-blob');
    const pieces: string[] = [];
    const built = await workers.openLayer(blob, { ...options, onPlainChunk: (c, data) => void pieces.push(`${c.digest}:${data.length}`) });
    const local = await m.open.openLayer(blob, options);
    expect(snapshot(built.index)).toEqual(snapshot(local.index));
    expect(built.index.table.equals(local.index.table)).toBe(true);
    expect(Buffer.isBuffer(built.record)).toBe(true);
    expect(JSON.parse((built.record as Buffer).toString())).toEqual(JSON.parse(JSON.stringify(local.record)));
    expect(snapshot(await workers.loadLayerRecord(built.record))).toEqual(snapshot(local.index));
    if (_name === 'plain tar+gzip') {
      // every piece of every regular file came back, with its bytes
      const want = [...local.index.allNodes()].flatMap((n) => n.chunks.filter((c) => !c.zeros).map((c) => `${c.digest}:${c.size}`));
      expect(pieces.sort()).toEqual(want.sort());
      expect(pieces.length).toBeGreaterThan(0);
    } else expect(pieces).toEqual([]);
  });

  it('errors come back typed, naming the blob', async () => {
    const workers = new m.worker.IndexWorkers();
    const blob = new m.blob.BufferBlob(est.blob, 'test-blob');
    const wrong = `sha256:${'0'.repeat(64)}`;
    const err = await workers.openLayer(blob, { expectedTocDigest: wrong as Digest }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(m.errors.FormatError);
    expect(err).toMatchObject({ code: 'TOC_DIGEST_MISMATCH', context: { blob: 'test-blob' } });
  });

  it('a build over the heap cap is refused with TOC_TOO_LARGE, and this process lives on', async () => {
    const l = manyEntriesLayer('tar+gzip', 60_000);
    const workers = new m.worker.IndexWorkers();
    const blob = new m.blob.BufferBlob(l.blob, 'big-blob');
    const limits = { ...m.limits.DEFAULT_LIMITS, maxIndexHeapBytes: 16 * 1024 * 1024 };
    const err = await workers.openLayer(blob, { limits }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(m.errors.FormatError);
    expect(err).toMatchObject({ code: 'TOC_TOO_LARGE', context: { blob: 'big-blob' } });
    expect((err as Error).message).toMatch(/16 MiB of heap/);
    // the next build runs (the queue is not stuck behind the dead worker)
    const small = await workers.openLayer(new m.blob.BufferBlob(est.blob, 'test-blob'), { expectedTocDigest: est.tocDigest });
    expect(small.index.nodeCount).toBeGreaterThan(1);
  }, 120_000);

  it('an aborted open rejects with the abort reason', async () => {
    const workers = new m.worker.IndexWorkers();
    const ac = new AbortController();
    const p = workers.openLayer(new m.blob.BufferBlob(est.blob, 'test-blob'), { expectedTocDigest: est.tocDigest, signal: ac.signal });
    ac.abort(new Error('gone'));
    await expect(p).rejects.toThrow('gone');
  });
});
