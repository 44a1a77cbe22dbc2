import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { BufferBlob } from '../../src/core/blob.js';
import { readVerifiedChunks, type ChunkRequest } from '../../src/formats/chunk-reader.js';
import { loadLayerRecord, openLayer } from '../../src/formats/open-layer.js';
import { ChunkCache } from '../../src/cache/chunk-cache.js';
import { ObjectStore } from '../../src/cache/object-store.js';
import { layerChunkRequests, Prefetcher, PrefetchScheduler, type PrefetchTarget } from '../../src/cache/prefetch.js';
import { buildEStargz, prand } from '../helpers/writers/estargz.js';
import { tempDir } from './support/tmp.js';
import { asByteString } from '../../src/formats/byte-string.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

describe('PrefetchScheduler', () => {
  it('starts no background task while a demand read is in flight, and bounds concurrency', async () => {
    const s = new PrefetchScheduler({ concurrency: 2 });
    let releaseDemand!: () => void;
    const demand = s.demand(() => new Promise<void>((r) => (releaseDemand = r)));
    const started: number[] = [];
    let running = 0;
    let maxRunning = 0;
    const gates: (() => void)[] = [];
    const tasks = [1, 2, 3].map((i) =>
      s.background(async () => {
        started.push(i);
        running++;
        maxRunning = Math.max(maxRunning, running);
        await new Promise<void>((r) => gates.push(r));
        running--;
      }),
    );
    await new Promise((r) => setImmediate(r));
    expect(started).toEqual([]); // demand in flight: everything waits
    releaseDemand();
    await demand;
    await new Promise((r) => setImmediate(r));
    expect(started.length).toBe(2); // concurrency bound
    while (gates.length) {
      gates.shift()!();
      await new Promise((r) => setImmediate(r));
    }
    await Promise.all(tasks);
    expect(started.sort()).toEqual([1, 2, 3]);
    expect(maxRunning).toBe(2);
    s.close();
    await expect(s.background(async () => 1)).rejects.toBeTruthy();
  });
});

describe('Prefetcher', () => {
  it('fetches the files before .prefetch.landmark first, the rest only with background fetch', async () => {
    const fx = buildEStargz(
      [
        { name: 'hot/a', type: 'reg', data: prand(40_000, 'a') },
        { name: 'cold/b', type: 'reg', data: prand(40_000, 'b') },
      ],
      { chunkSize: 16_384, prioritized: ['hot/a'] },
    );
    const blob = new BufferBlob(fx.blob);
    const { index, record } = await openLayer(blob, { expectedTocDigest: fx.tocDigest });
    expect(loadLayerRecord(record).prefetchEnd).toBe(index.prefetchEnd);
    expect(index.prefetchEnd).toBeGreaterThan(0);
    const dir = await tempDir();
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const cache = new ChunkCache({ store: await ObjectStore.open({ dir: join(dir, 'o'), tmpDir: join(dir, 't') }) });
    const target = (): PrefetchTarget => ({
      name: 'layer',
      index,
      ensureCached: (reqs: readonly ChunkRequest[], signal: AbortSignal) =>
        cache.ensureCached({ name: 'layer' }, reqs, (r, sig) => readVerifiedChunks(blob, { compression: 'gzip', blobName: 'b' }, r, sig), { signal }),
    });
    const hot = index.lookup(asByteString('hot/a'))!.chunks;
    const cold = index.lookup(asByteString('cold/b'))!.chunks;
    expect(layerChunkRequests(index, index.prefetchEnd).map((r) => r.chunk.digest)).toEqual(hot.map((c) => c.digest));

    const p1 = new Prefetcher({ scheduler: new PrefetchScheduler(), batchBytes: 20_000 });
    await p1.start(target());
    await cache.drain();
    for (const c of hot) expect(await cache.has(c.digest)).toBe(true);
    for (const c of cold) expect(await cache.has(c.digest)).toBe(false);
    expect(cache.stats.hotEntries).toBe(0); // prefetch does not displace the hot tier

    const p2 = new Prefetcher({ scheduler: new PrefetchScheduler(), background: true });
    await p2.start(target());
    await cache.drain();
    for (const c of cold) expect(await cache.has(c.digest)).toBe(true);
    expect(p2.stats.chunksFetched).toBe(cold.length); // hot chunks were skipped, not refetched
    await p1.close();
    await p2.close();
  });
});
