/**
 * Issue 9 row 3: a plain gzip layer whose cached pieces were evicted (or corrupted) is re-read with
 * ONE pass over the blob that puts every piece back on disk, instead of a decode from byte 0 per
 * missed chunk. Real object/metadata stores, the LayoutSource test double for resolution.
 */
import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterEach, describe, expect, it } from 'vitest';
import { sha256Of } from '../../src/core/digest.js';
import { ChunkCache } from '../../src/cache/chunk-cache.js';
import { MetadataStore } from '../../src/cache/metadata-store.js';
import { ObjectStore } from '../../src/cache/object-store.js';
import { LayerCatalog } from '../../src/catalog/catalog.js';
import { refToBase64 } from '../../src/sources/reference.js';
import { prand } from '../helpers/writers/estargz.js';
import { buildTar, type TarEntry } from '../helpers/writers/tar.js';
import { tempDir } from '../cache/support/tmp.js';
import { LayoutSource } from '../catalog/support/layout-source.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

const REF = 'localhost:5000/plain:1';
const FILES = Array.from({ length: 6 }, (_, i) => ({ name: `d/f${i}`, data: prand(1_500_000 + i * 1000, `f${i}`) }));

async function filesUnder(d: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(d, { withFileTypes: true }).catch(() => [])) {
    if (e.isDirectory()) out.push(...(await filesUnder(join(d, e.name))));
    else out.push(join(d, e.name));
  }
  return out;
}

describe('row 3: plain-layer re-read after eviction', () => {
  it('one miss refills every piece of the layer in one pass; the rest is then read from disk', async () => {
    const dir = await tempDir('lazy-als-refill-');
    const src = await LayoutSource.create(join(dir, 'layout'));
    const entries: TarEntry[] = [{ name: 'd/', type: 'dir' }, ...FILES.map((f) => ({ name: f.name, type: 'reg' as const, data: f.data }))];
    const tar = buildTar(entries);
    const blob = gzipSync(tar);
    await src.addImage(REF, [{ blob, diffId: sha256Of(tar) }]);
    const stateDir = join(dir, 'state');
    const blobStore = await ObjectStore.open({ dir: join(stateDir, 'objects'), tmpDir: join(stateDir, 'tmp', 'objects') });
    const metadata = await MetadataStore.open({ stateDir });
    // No memory tier to speak of: every read goes to the disk tier or the fetcher.
    const chunkCache = new ChunkCache({ store: blobStore, hotBytes: 1 });
    const catalog = new LayerCatalog({ source: src, metadata, chunkCache, blobStore });
    cleanups.push(async () => {
      await chunkCache.drain();
      await catalog.close();
      await src.close();
      await rm(dir, { recursive: true, force: true });
    });
    const layer = (await catalog.lookup(refToBase64(REF), sha256Of(blob)))!;
    // Evict every cached piece (as eviction or a wiped cache would).
    for (const f of await filesUnder(join(stateDir, 'objects'))) await rm(f);
    const reads0 = src.blobReads;
    const read = async (name: string): Promise<Buffer> => {
      const node = layer.index.lookup(name as never)!;
      return layer.readFile(node, name, 0, node.size);
    };
    expect((await read(FILES[5]!.name)).equals(FILES[5]!.data)).toBe(true);
    await chunkCache.drain();
    const reads1 = src.blobReads;
    expect(reads1).toBeGreaterThan(reads0);
    // Every other file now comes from disk: no more reads of the blob.
    for (const f of FILES.slice(0, 5)) expect((await read(f.name)).equals(f.data)).toBe(true);
    expect(src.blobReads).toBe(reads1);
  });
});
