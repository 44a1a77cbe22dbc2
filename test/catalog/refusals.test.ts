/**
 * A refused layer is never silent: a warn line naming key, ref and reason (warn is the daemon's
 * default log level), and the catalog's status lists it (bounded). Real stores, real blobs; the
 * layer is refused because its config diff_id does not match the tar (a real full-pass check).
 */
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterEach, describe, expect, it } from 'vitest';
import { sha256Of } from '../../src/core/digest.js';
import { createLogger } from '../../src/core/log.js';
import { ChunkCache } from '../../src/cache/chunk-cache.js';
import { MetadataStore } from '../../src/cache/metadata-store.js';
import { ObjectStore } from '../../src/cache/object-store.js';
import { LayerCatalog } from '../../src/catalog/catalog.js';
import { RefusalLog } from '../../src/catalog/refusals.js';
import { refToBase64 } from '../../src/sources/reference.js';
import { buildTar } from '../helpers/writers/tar.js';
import { byteStringFromText as B } from '../../src/formats/byte-string.js';
import { tempDir } from '../cache/support/tmp.js';
import { LayoutSource } from './support/layout-source.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

describe('refused layers', () => {
  it('log a warn line with key, ref and reason, and are listed in status', async () => {
    const dir = await tempDir('lazy-als-refusals-');
    const src = await LayoutSource.create(join(dir, 'layout'));
    const tar = buildTar([{ name: 'f', type: 'reg', data: Buffer.from('x') }]);
    const blob = gzipSync(tar);
    const ref = 'localhost:5000/refused:1';
    await src.addImage(ref, [{ blob, diffId: sha256Of(Buffer.from('not this tar')) }]);
    const lines: string[] = [];
    const blobStore = await ObjectStore.open({ dir: join(dir, 'objects'), tmpDir: join(dir, 'tmp') });
    const metadata = await MetadataStore.open({ stateDir: join(dir, 'state') });
    const chunkCache = new ChunkCache({ store: blobStore });
    const catalog = new LayerCatalog({
      source: src, metadata, chunkCache, blobStore,
      logger: createLogger('warn', { write: (s: string) => (lines.push(s), true) } as never),
    });
    cleanups.push(async () => {
      await chunkCache.drain();
      await catalog.close();
      await src.close();
      await rm(dir, { recursive: true, force: true });
    });
    const key = sha256Of(blob);
    expect(await catalog.lookup(refToBase64(ref), key)).toBeUndefined();
    const warn = lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l['msg'] === 'catalog.layer_refused' || l['event'] === 'catalog.layer_refused');
    expect(warn, lines.join('\n')).toBeDefined();
    expect(warn).toMatchObject({ level: 'warn', layer: key, ref, code: 'DIFFID_MISMATCH' });
    const st = catalog.status();
    expect(st.refused).toHaveLength(1);
    expect(st.refused[0]).toMatchObject({ kind: 'refused', key, ref, code: 'DIFFID_MISMATCH', count: 1 });
    expect(st.refused[0]!.message).toMatch(/diffID/);
  });

  it('the list is bounded: the newest 100, one entry per (ref, key) with a count', () => {
    let t = 0;
    const log = new RefusalLog(() => ++t);
    for (let i = 0; i < 150; i++) log.record('refused', `k${i}`, undefined, new Error(`e${i}`));
    log.record('refused', 'k149', undefined, new Error('again'));
    const l = log.list();
    expect(l).toHaveLength(RefusalLog.MAX);
    expect(l[0]).toMatchObject({ key: 'k149', count: 2, message: 'again', code: 'INTERNAL' });
    expect(l.at(-1)!.key).toBe('k50');
  });
});

describe('quarantine', () => {
  it('a served eStargz layer whose TOC lies about a mode is quarantined by the whole-layer check: reads EIO, status says why', async () => {
    const { buildEStargz } = await import('../helpers/writers/estargz.js');
    const { Prefetcher, PrefetchScheduler } = await import('../../src/cache/prefetch.js');
    const dir = await tempDir('lazy-als-quarantine-');
    const src = await LayoutSource.create(join(dir, 'layout'));
    const entries = [
      { name: 'etc/', type: 'dir' as const },
      { name: 'etc/passwd', type: 'reg' as const, data: Buffer.from('root:x:0:0::/root:/bin/sh\n') },
      { name: 'bin/', type: 'dir' as const },
      { name: 'bin/sh', type: 'reg' as const, data: Buffer.alloc(9000, 7), mode: 0o755 },
    ];
    const lying = buildEStargz(entries, { editToc: (toc) => void (toc.entries.find((e) => e['name'] === 'bin/sh')!['mode'] = 0o4755) });
    const ref = 'localhost:5000/lying:1';
    await src.addImage(ref, [{ blob: lying.blob, diffId: lying.diffId, annotations: { 'containerd.io/snapshot/stargz/toc.digest': lying.tocDigest } }]);
    const lines: string[] = [];
    const blobStore = await ObjectStore.open({ dir: join(dir, 'objects'), tmpDir: join(dir, 'tmp') });
    const metadata = await MetadataStore.open({ stateDir: join(dir, 'state') });
    const chunkCache = new ChunkCache({ store: blobStore });
    const scheduler = new PrefetchScheduler();
    const prefetcher = new Prefetcher({ scheduler, background: true });
    const catalog = new LayerCatalog({
      source: src, metadata, chunkCache, blobStore, scheduler, prefetcher, verifyWholeLayers: true,
      logger: createLogger('warn', { write: (s: string) => (lines.push(s), true) }),
    });
    cleanups.push(async () => {
      await prefetcher.close();
      await chunkCache.drain();
      await catalog.close();
      await src.close();
      await rm(dir, { recursive: true, force: true });
    });
    const refElem = refToBase64(ref);
    const layer = (await catalog.lookup(refElem, lying.tocDigest))!;
    expect(layer).toBeDefined();
    await catalog.verification(refElem, lying.tocDigest);
    expect(layer.quarantined?.message).toMatch(/mode/);
    const node = layer.index.lookup(B('etc/passwd'))!;
    await expect(layer.readFile(node, 'etc/passwd', 0, 10)).rejects.toMatchObject({ code: 'LAYER_QUARANTINED' });
    // nor does a prefetch of it put its chunks back into the cache the quarantine emptied
    const req = node.chunks.map((chunk) => ({ chunk, entry: 'etc/passwd' }));
    await expect(layer.ensureCached(req, new AbortController().signal)).rejects.toMatchObject({ code: 'LAYER_QUARANTINED' });
    const st = catalog.status();
    expect(st.refused[0]).toMatchObject({ kind: 'quarantined', key: lying.tocDigest, ref, code: 'FORMAT_CONFLICT' });
    const warn = lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l['msg'] === 'catalog.layer_quarantined' || l['event'] === 'catalog.layer_quarantined');
    expect(warn).toMatchObject({ level: 'warn', layer: lying.tocDigest, ref, code: 'FORMAT_CONFLICT' });

    // the cache entries its reads produced are dropped: every chunk the background fetch stored
    const chunks = [...layer.index.allNodes()].flatMap((n) => n.chunks.map((c) => c.digest));
    expect(chunks.length).toBeGreaterThan(0);
    for (const d of chunks) expect(await blobStore.has(d), d).toBe(false);

    // persisted: a restarted store (new catalog, same state dir, no whole-layer check) serves the
    // layer quarantined again — reads EIO, status says why — without trusting its TOC afresh
    const again = new LayerCatalog({ source: src, metadata: await MetadataStore.open({ stateDir: join(dir, 'state') }), chunkCache: new ChunkCache({ store: blobStore }), blobStore, logger: createLogger('silent') });
    cleanups.push(() => again.close());
    const restarted = (await again.lookup(refElem, lying.tocDigest))!;
    expect(restarted.quarantined?.message).toMatch(/FORMAT_CONFLICT.*mode/);
    await expect(restarted.readFile(node, 'etc/passwd', 0, 10)).rejects.toMatchObject({ code: 'LAYER_QUARANTINED' });
    expect(again.status().refused[0]).toMatchObject({ kind: 'quarantined', key: lying.tocDigest, ref });
  });
});
