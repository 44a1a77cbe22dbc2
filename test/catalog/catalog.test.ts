/**
 * LayerCatalog + ServedLayer over real layer blobs (eStargz written by the test writer, plain
 * tar+gzip), real object/metadata stores in temp state dirs, and the LayoutSource test double for
 * resolution (see support/layout-source.ts). Restart tests build fresh instances on the same state
 * dir with a source that throws on every call.
 */
import { open, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterEach, describe, expect, it } from 'vitest';
import { sha256Of, type Digest } from '../../src/core/digest.js';
import { ChunkCache } from '../../src/cache/chunk-cache.js';
import { MetadataStore } from '../../src/cache/metadata-store.js';
import { ObjectStore } from '../../src/cache/object-store.js';
import { LayerCatalog } from '../../src/catalog/catalog.js';
import type { ServedLayer } from '../../src/catalog/layer.js';
import { refToBase64 } from '../../src/sources/reference.js';
import type { BlobSource } from '../../src/sources/source.js';
import { buildEStargz, prand } from '../helpers/writers/estargz.js';
import { buildTar, type TarEntry } from '../helpers/writers/tar.js';
import { tempDir, tinyTmpfs, unmount } from '../cache/support/tmp.js';
import { DeadSource, LayoutSource } from './support/layout-source.js';
import { asByteString } from '../../src/formats/byte-string.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

const REF = 'localhost:5000/app:1';
const REF_ELEM = refToBase64(REF);
const BIG = prand(300_000, 'big');
const ONLY = prand(7000, 'esgz-only');
const PASSWD = Buffer.from('root:x:0:0:root:/root:/bin/sh\n');
const ENTRIES: TarEntry[] = [
  { name: 'etc/', type: 'dir' },
  { name: 'etc/passwd', type: 'reg', data: PASSWD, uid: 0, gid: 0 },
  { name: 'data/', type: 'dir' },
  { name: 'data/big', type: 'reg', data: BIG, uid: 1000, gid: 1000 },
  { name: 'data/small', type: 'reg', data: prand(5000, 'small'), uid: 33, gid: 33 },
];

interface Stack {
  catalog: LayerCatalog;
  blobStore: ObjectStore;
  metadata: MetadataStore;
  chunkCache: ChunkCache;
}

async function stack(stateDir: string, source: BlobSource | undefined, now?: () => number): Promise<Stack> {
  const blobStore = await ObjectStore.open({ dir: join(stateDir, 'objects'), tmpDir: join(stateDir, 'tmp', 'objects') });
  const metadata = await MetadataStore.open({ stateDir });
  const chunkCache = new ChunkCache({ store: blobStore });
  const catalog = new LayerCatalog({
    ...(source ? { source } : {}),
    metadata,
    chunkCache,
    blobStore,
    ...(now ? { now } : {}),
  });
  cleanups.push(async () => {
    await chunkCache.drain();
    await catalog.close();
  });
  return { catalog, blobStore, metadata, chunkCache };
}

async function fixture(): Promise<{
  dir: string;
  src: LayoutSource;
  esgz: ReturnType<typeof buildEStargz>;
  plainBlob: Buffer;
  plainDiffId: Digest;
  plainTarSize: number;
}> {
  const dir = await tempDir('lazy-als-catalog-');
  const src = await LayoutSource.create(join(dir, 'layout'));
  cleanups.push(async () => {
    await src.close();
    await rm(dir, { recursive: true, force: true });
  });
  // ONLY is in the eStargz layer alone (chunks are content addressed: the plain layer's open caches
  // every file it shares with the eStargz layer).
  const esgz = buildEStargz([...ENTRIES, { name: 'only/esgz', type: 'reg', data: ONLY }], { chunkSize: 65536, prioritized: ['etc/passwd'] });
  const tar = buildTar(ENTRIES);
  const plainBlob = gzipSync(tar);
  const plainDiffId = sha256Of(tar);
  await src.addImage(REF, [
    {
      blob: esgz.blob,
      diffId: esgz.diffId,
      annotations: {
        'containerd.io/snapshot/stargz/toc.digest': esgz.tocDigest,
        'io.containers.estargz.uncompressed-size': String(esgz.uncompressedSize),
      },
    },
    { blob: plainBlob, diffId: plainDiffId },
  ]);
  return { dir, src, esgz, plainBlob, plainDiffId, plainTarSize: tar.length };
}

/** Buffer.equals, not toEqual: vitest's deep equality walks large Buffers byte by byte (slow). */
function expectBytes(actual: Buffer, expected: Buffer): void {
  expect(actual.length).toBe(expected.length);
  expect(actual.equals(expected)).toBe(true);
}

async function readAll(layer: ServedLayer, path: string): Promise<Buffer> {
  const node = layer.index.lookup(asByteString(path))!;
  return layer.readFile(node, path, 0, node.size + 100);
}

describe('LayerCatalog', () => {
  it('Era B (TOC key): lookup, info, verified file reads and the exact blob', async () => {
    const { dir, src, esgz } = await fixture();
    const { catalog } = await stack(join(dir, 'state'), src);
    const layer = await catalog.lookup(REF_ELEM, esgz.tocDigest);
    expect(layer).toBeDefined();
    expect(layer!.keyKind).toBe('toc');
    const info = JSON.parse(layer!.info.toString()) as Record<string, unknown>;
    expect(info).toEqual({
      'toc-digest': esgz.tocDigest,
      'compressed-size': esgz.blob.length,
      'diff-size': -1,
      compression: 2,
      uidset: [0, 33, 1000],
      gidset: [0, 33, 1000],
      flags: { 'expected-layer-diffid': esgz.diffId },
    });
    expect(layer!.info.toString().endsWith('\n')).toBe(true);
    expectBytes(await readAll(layer!, 'data/big'), BIG);
    const node = layer!.index.lookup(asByteString('data/big'))!;
    expectBytes(await layer!.readFile(node, 'data/big', 65_000, 2000), BIG.subarray(65_000, 67_000)); // spans 2 chunks
    expectBytes(await layer!.readFile(node, 'data/big', BIG.length - 10, 4096), BIG.subarray(BIG.length - 10)); // EOF clamp
    expect((await layer!.readFile(node, 'data/big', BIG.length, 10)).length).toBe(0);
    expect(layer!.stats.fetchedBytes).toBe(BIG.length);
    // blob: whole blob fetched once, verified, then ranges.
    const blob = Buffer.concat([await layer!.readBlob(0, 1000), await layer!.readBlob(1000, esgz.blob.length)]);
    expectBytes(blob, esgz.blob);
    // Same answer object on a repeated lookup, no new resolution.
    expect(await catalog.lookup(REF_ELEM, esgz.tocDigest)).toBe(layer);
    expect(src.calls.resolve).toBe(1);
  });

  it('concurrent lookups of one (ref, key) share one resolution; malformed names answer at once', async () => {
    const { dir, src, esgz } = await fixture();
    const { catalog } = await stack(join(dir, 'state'), src);
    const all = await Promise.all(Array.from({ length: 16 }, () => catalog.lookup(REF_ELEM, esgz.tocDigest)));
    expect(new Set(all).size).toBe(1);
    expect(all[0]).toBeDefined();
    expect(src.calls.resolve).toBe(1);
    expect(src.calls.openBlob).toBe(1);
    expect(await catalog.lookup('not base64!', esgz.tocDigest)).toBeUndefined();
    expect(await catalog.lookup(REF_ELEM, 'sha256:nothex')).toBeUndefined();
    expect(await catalog.lookup(Buffer.from('UPPER/Case:x').toString('base64'), esgz.tocDigest)).toBeUndefined();
    expect(src.calls.resolve).toBe(1);
  });

  it('caches negative answers for a short TTL', async () => {
    const { dir, src } = await fixture();
    let now = 1000;
    const { catalog } = await stack(join(dir, 'state'), src, () => now);
    const unknown = sha256Of(Buffer.from('no such layer'));
    expect(await catalog.lookup(REF_ELEM, unknown)).toBeUndefined();
    const n = src.calls.resolve;
    expect(await catalog.lookup(REF_ELEM, unknown)).toBeUndefined();
    expect(src.calls.resolve).toBe(n);
    now += 60_000;
    expect(await catalog.lookup(REF_ELEM, unknown)).toBeUndefined();
    expect(src.calls.resolve).toBe(n + 1);
  });

  it('Era A (blob key) of a plain layer: verified diffID and size in info, chunks cached by the open', async () => {
    const { dir, src, plainBlob, plainDiffId, plainTarSize } = await fixture();
    const { catalog } = await stack(join(dir, 'state'), src);
    const layer = await catalog.lookup(REF_ELEM, sha256Of(plainBlob));
    expect(layer?.keyKind).toBe('blob');
    expect(JSON.parse(layer!.info.toString())).toEqual({
      'compressed-diff-digest': sha256Of(plainBlob),
      'compressed-size': plainBlob.length,
      'diff-digest': plainDiffId,
      'diff-size': plainTarSize,
      compression: 2,
      uidset: [0, 33, 1000],
      gidset: [0, 33, 1000],
    });
    const readsAfterOpen = src.blobReads;
    expectBytes(await readAll(layer!, 'data/big'), BIG);
    expect(await readAll(layer!, 'etc/passwd')).toEqual(PASSWD);
    expect(src.blobReads).toBe(readsAfterOpen); // served from the staged-then-committed chunks
    expect(layer!.stats.fetchedBytes).toBe(0);
  });

  it('a plain layer whose diffID does not match is not served and leaves nothing cached', async () => {
    const { dir, src, plainBlob } = await fixture();
    await src.addImage('localhost:5000/bad:1', [{ blob: plainBlob, diffId: sha256Of(Buffer.from('wrong')) }]);
    const { catalog, blobStore } = await stack(join(dir, 'state'), src);
    expect(await catalog.lookup(refToBase64('localhost:5000/bad:1'), sha256Of(plainBlob))).toBeUndefined();
    expect((await blobStore.usage()).objects).toBe(0);
    expect(await readdir(blobStore.tmpDir)).toEqual([]);
  });

  it('Era A without a config diffID is not servable', async () => {
    const { dir, src, plainBlob } = await fixture();
    await src.addImage('localhost:5000/nodiff:1', [{ blob: plainBlob, diffId: null }]);
    const { catalog } = await stack(join(dir, 'state'), src);
    expect(await catalog.lookup(refToBase64('localhost:5000/nodiff:1'), sha256Of(plainBlob))).toBeUndefined();
    await expect(catalog.resolve(refToBase64('localhost:5000/nodiff:1'), sha256Of(plainBlob))).rejects.toMatchObject({ code: 'LAYER_NOT_SERVABLE' });
  });

  it('restart with the source removed: same layers, same info, cached content and blob served offline', async () => {
    const { dir, src, esgz, plainBlob } = await fixture();
    const state = join(dir, 'state');
    const first = await stack(state, src);
    const a = (await first.catalog.lookup(REF_ELEM, esgz.tocDigest))!;
    const b = (await first.catalog.lookup(REF_ELEM, sha256Of(plainBlob)))!;
    await readAll(a, 'data/big');
    await a.readBlob(0, 10);
    await first.chunkCache.drain();

    const dead = new DeadSource();
    const second = await stack(state, dead);
    const a2 = await second.catalog.lookup(REF_ELEM, esgz.tocDigest);
    const b2 = await second.catalog.lookup(REF_ELEM, sha256Of(plainBlob));
    expect(a2?.info).toEqual(a.info);
    expect(b2?.info).toEqual(b.info);
    expectBytes(await readAll(a2!, 'data/big'), BIG);
    expectBytes(await readAll(b2!, 'data/small'), prand(5000, 'small'));
    expectBytes(await a2!.readBlob(0, esgz.blob.length), esgz.blob);
    expect(dead.calls).toBe(0);
    // Not cached and the source is gone: a typed error, not wrong bytes.
    await expect(readAll(a2!, 'only/esgz')).rejects.toMatchObject({ code: 'REGISTRY_TRANSPORT' });

    // A store without :ref answers from layers already known by key (and only those).
    const third = await stack(state, undefined);
    const c = await third.catalog.lookup(undefined, esgz.tocDigest);
    expect(c?.info).toEqual(a.info);
    expectBytes(await readAll(c!, 'data/big'), BIG);
    expect(await third.catalog.lookup(undefined, sha256Of(Buffer.from('never served')))).toBeUndefined();
  });

  it('a corrupted blob gives a typed read error and caches nothing', async () => {
    const { dir, src, esgz } = await fixture();
    const peek = await (await stack(join(dir, 'peek'), src)).catalog.lookup(REF_ELEM, esgz.tocDigest);
    const span = peek!.index.lookup(asByteString('data/big'))!.chunks[0]!.span;
    // The source now serves a blob with one flipped byte inside data/big's first chunk member
    // (the TOC at the end stays intact, so the layer still opens).
    const fh = await open(join(src.dir, 'blobs', 'sha256', sha256Of(esgz.blob).slice(7)), 'r+');
    const pos = span.offset + Math.floor((span.end - span.offset) / 2);
    const byte = Buffer.alloc(1);
    await fh.read(byte, 0, 1, pos);
    byte[0] = (byte[0] ?? 0) ^ 0xff;
    await fh.write(byte, 0, 1, pos);
    await fh.close();
    const { catalog, blobStore, chunkCache } = await stack(join(dir, 'state'), src);
    const layer = (await catalog.lookup(REF_ELEM, esgz.tocDigest))!;
    const node = layer.index.lookup(asByteString('data/big'))!;
    const err = await layer.readFile(node, 'data/big', 0, 100).catch((e: unknown) => e);
    expect((err as { code?: string }).code).toMatch(/^(CHUNK_DIGEST_MISMATCH|DECOMPRESS_FAILED)$/);
    await chunkCache.drain();
    expect(await chunkCache.has(node.chunks[0]!.digest)).toBe(false);
    expect(await blobStore.has(node.chunks[0]!.digest)).toBe(false);
    // The `blob` file of a corrupted blob is never served either.
    await expect(layer.readBlob(0, 10)).rejects.toMatchObject({ code: 'DIGEST_MISMATCH' });
    expect(await blobStore.has(layer.blobDigest)).toBe(false);
    await chunkCache.drain(); // read-ahead of the (intact) following chunks may still be storing
    expect(await readdir(blobStore.tmpDir)).toEqual([]);
  });

  it('full disk (real 64 KiB tmpfs state dir): reads and the blob are still correct, nothing partial cached', async () => {
    const { src, esgz } = await fixture();
    const mnt = await tinyTmpfs('64k');
    if (!mnt) {
      expect.soft(process.getuid?.(), 'tmpfs mount needs root').not.toBe(0);
      return;
    }
    cleanups.push(() => unmount(mnt)); // registered first, so it runs after the stack's cleanup
    const { catalog, blobStore, chunkCache } = await stack(mnt, src);
    const layer = (await catalog.lookup(REF_ELEM, esgz.tocDigest))!;
    expect(layer).toBeDefined();
    expectBytes(await readAll(layer, 'data/big'), BIG);
    expectBytes(await layer.readBlob(0, esgz.blob.length), esgz.blob); // verified, held in memory
    await chunkCache.drain();
    expect(chunkCache.stats.storeFailures).toBeGreaterThan(0);
    expect(await blobStore.has(layer.blobDigest)).toBe(false);
    expect(await readdir(blobStore.tmpDir)).toEqual([]);
    for await (const o of blobStore.list()) expect(await blobStore.get(o.digest)).toBeDefined(); // whatever landed is whole
  });

  it('use/release counts: +1/−1, never below 0, unknown release is a no-op, counts never hide a layer', async () => {
    const { dir, src, esgz } = await fixture();
    const { catalog } = await stack(join(dir, 'state'), src);
    expect(catalog.release(REF_ELEM, esgz.tocDigest)).toBe(0);
    expect(catalog.use(REF_ELEM, esgz.tocDigest)).toBe(1);
    expect(catalog.use(REF_ELEM, esgz.tocDigest)).toBe(2);
    expect(catalog.release(REF_ELEM, esgz.tocDigest)).toBe(1);
    expect(catalog.release(REF_ELEM, esgz.tocDigest)).toBe(0);
    expect(catalog.release(REF_ELEM, esgz.tocDigest)).toBe(0);
    expect(catalog.useCount(REF_ELEM, esgz.tocDigest)).toBe(0);
    catalog.use(undefined, esgz.tocDigest);
    expect(catalog.status().useCounts).toEqual([{ refElem: undefined, key: esgz.tocDigest, count: 1 }]);
    expect(await catalog.lookup(REF_ELEM, esgz.tocDigest)).toBeDefined();
    expect(catalog.status().served[0]).toMatchObject({ key: esgz.tocDigest, uses: 0 });
  });
});
