/**
 * Issue 9 row 6: a flood of lookups of random names and of `use` creates must not grow the catalog
 * without bound, and unknown digests under a known reference are answered from the remembered
 * manifest — no manifest GET and no state-file rewrite per lookup. Real metadata/object stores on
 * disk; the source is the counting layout source (a registry cannot count resolutions for us).
 */
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { sha256Of } from '../../src/core/digest.js';
import { ChunkCache } from '../../src/cache/chunk-cache.js';
import { MetadataStore } from '../../src/cache/metadata-store.js';
import { ObjectStore } from '../../src/cache/object-store.js';
import { LayerCatalog } from '../../src/catalog/catalog.js';
import { refToBase64 } from '../../src/sources/reference.js';
import { buildEStargz } from '../helpers/writers/estargz.js';
import { tempDir } from '../cache/support/tmp.js';
import { LayoutSource } from './support/layout-source.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

const REF = 'localhost:5000/app:1';
const REF_ELEM = refToBase64(REF);

async function setup(opts: { now?: () => number; negativeMax?: number; useCountsMax?: number } = {}) {
  const dir = await tempDir('lazy-als-bounded-');
  const src = await LayoutSource.create(join(dir, 'layout'));
  const layer = buildEStargz([{ name: 'etc/passwd', type: 'reg', data: Buffer.from('root:x:0:0::/root:/bin/sh\n') }]);
  await src.addImage(REF, [
    { blob: layer.blob, diffId: layer.diffId, annotations: { 'containerd.io/snapshot/stargz/toc.digest': layer.tocDigest } },
  ]);
  const stateDir = join(dir, 'state');
  const blobStore = await ObjectStore.open({ dir: join(stateDir, 'objects'), tmpDir: join(stateDir, 'tmp', 'objects') });
  const metadata = await MetadataStore.open({ stateDir });
  const chunkCache = new ChunkCache({ store: blobStore });
  const catalog = new LayerCatalog({ source: src, metadata, chunkCache, blobStore, ...opts });
  cleanups.push(async () => {
    await chunkCache.drain();
    await catalog.close();
    await src.close();
    await rm(dir, { recursive: true, force: true });
  });
  return { src, layer, metadata, catalog };
}

function randomDigest(i: number): string {
  return sha256Of(Buffer.from(`random ${i}`));
}

describe('catalog bounds (issue 9 row 6)', () => {
  it('unknown digests under a known reference: answered from the remembered manifest, no GET, no state rewrite', async () => {
    const { src, layer, metadata, catalog } = await setup();
    expect(await catalog.lookup(REF_ELEM, layer.tocDigest)).toBeDefined();
    expect(src.calls.resolve).toBe(1);
    const saves = vi.spyOn(metadata, 'saveImage');
    for (let i = 0; i < 20; i++) expect(await catalog.lookup(REF_ELEM, randomDigest(i))).toBeUndefined();
    expect(src.calls.resolve).toBe(1);
    expect(saves).not.toHaveBeenCalled();
  });

  it('a digest not in the remembered image is looked up again after the refresh interval (re-pushed tag), once', async () => {
    let now = 1_000_000;
    const { src, catalog } = await setup({ now: () => now });
    const other = buildEStargz([{ name: 'new', type: 'reg', data: Buffer.from('new layer') }]);
    expect(await catalog.lookup(REF_ELEM, other.tocDigest)).toBeUndefined();
    expect(src.calls.resolve).toBe(1);
    await src.addImage(REF, [{ blob: other.blob, diffId: other.diffId, annotations: { 'containerd.io/snapshot/stargz/toc.digest': other.tocDigest } }]);
    now += 10_000; // negative TTL over, refresh interval not: still answered from memory
    expect(await catalog.lookup(REF_ELEM, other.tocDigest)).toBeUndefined();
    expect(src.calls.resolve).toBe(1);
    now += 60_000;
    const found = await Promise.all([catalog.lookup(REF_ELEM, other.tocDigest), catalog.lookup(REF_ELEM, randomDigest(1))]);
    expect(found[0]).toBeDefined();
    expect(found[1]).toBeUndefined();
    expect(src.calls.resolve).toBe(2);
  });

  it('100k lookups of random names and 100k `use` creates keep the negative cache, use counts and status bounded', async () => {
    const { src, layer, catalog } = await setup({ negativeMax: 1000, useCountsMax: 1000 });
    expect(await catalog.lookup(REF_ELEM, layer.tocDigest)).toBeDefined();
    const N = 100_000;
    for (let i = 0; i < N; i++) {
      const name = i % 2 ? randomDigest(i) : `junk-${i}`;
      await catalog.lookup(REF_ELEM, name);
      catalog.use(REF_ELEM, randomDigest(N + i));
    }
    catalog.use(REF_ELEM, layer.tocDigest);
    const st = catalog.status();
    expect(st.negativeEntries).toBeLessThanOrEqual(1000);
    expect(st.useCounts.length).toBeLessThanOrEqual(1000);
    expect(st.refused.length).toBeLessThanOrEqual(1000);
    expect(JSON.stringify(st).length).toBeLessThan(1 << 20);
    expect(catalog.useCount(REF_ELEM, layer.tocDigest)).toBe(1); // the most recent stays counted
    expect(src.calls.resolve).toBe(1);
    // The served layer is still served, and a release never goes below 0.
    expect(await catalog.lookup(REF_ELEM, layer.tocDigest)).toBeDefined();
    expect(catalog.release(REF_ELEM, layer.tocDigest)).toBe(0);
    expect(catalog.release(REF_ELEM, layer.tocDigest)).toBe(0);
  }, 300_000);
});
