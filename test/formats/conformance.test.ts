/**
 * One suite every layer format runs: a new format gets all of it by adding one line to FORMATS.
 *   - round trip: every file of the written tree reads back through verified chunk reads, byte for
 *     byte, and the persisted record rebuilds the same tree;
 *   - truncation: a blob cut short is refused, or serves only right bytes (never a wrong one);
 *   - corruption: a blob with one byte flipped is refused, or serves only right bytes;
 *   - bounds: an index larger than the configured limits is refused with a coded error.
 * Blobs come from the project's writers (test/helpers/writers), descriptors as podman passes them.
 */
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { compress as zstdCompress } from 'zstd-napi';
import { BufferBlob } from '../../src/core/blob.js';
import type { Digest } from '../../src/core/digest.js';
import { sha256Of } from '../../src/core/digest.js';
import { LazyAlsError } from '../../src/core/errors.js';
import { DEFAULT_LIMITS } from '../../src/core/limits.js';
import { readVerifiedChunks } from '../../src/formats/chunk-reader.js';
import type { LayerFormat, LayerIndex } from '../../src/formats/model.js';
import type { OpenLayerOptions } from '../../src/formats/layer-reader.js';
import { loadLayerRecord, openLayer } from '../../src/formats/open-layer.js';
import { buildEStargz, prand } from '../helpers/writers/estargz.js';
import { buildTar, type TarEntry } from '../helpers/writers/tar.js';
import { buildZstdChunked } from '../helpers/writers/zstd-chunked.js';

interface Written {
  readonly blob: Buffer;
  readonly options: OpenLayerOptions;
}

/** format → how the project writes a layer of it, and the descriptor a puller would hand over. */
const FORMATS: readonly [LayerFormat, (entries: TarEntry[]) => Written][] = [
  ['estargz', (es) => toc(buildEStargz(es, { chunkSize: 8192 }))],
  ['stargz-legacy', (es) => toc(buildEStargz(es, { legacy: true }))],
  ['estargz-zstd', (es) => toc(buildEStargz(es, { compression: 'zstd', chunkSize: 8192 }))],
  ['zstd-chunked', (es) => {
    const w = buildZstdChunked(es, { chunkSize: 8192, holes: true });
    return { blob: w.blob, options: { descriptor: { digest: w.blobDigest as Digest, size: w.blob.length, annotations: w.annotations } } };
  }],
  ['tar', (es) => plain(buildTar(es))],
  ['tar+gzip', (es) => plain(gzipSync(buildTar(es)), buildTar(es))],
  ['tar+zstd', (es) => plain(zstdCompress(buildTar(es)), buildTar(es))],
];

function toc(fx: ReturnType<typeof buildEStargz>): Written {
  return { blob: fx.blob, options: { expectedTocDigest: fx.tocDigest, descriptor: { digest: fx.blobDigest, size: fx.blob.length } } };
}

function plain(blob: Buffer, tar: Buffer = blob): Written {
  return { blob, options: { descriptor: { digest: sha256Of(blob), size: blob.length }, diffId: sha256Of(tar) } };
}

const FILES: Record<string, Buffer> = {
  'etc/small': Buffer.from('hello\n'),
  'etc/empty': Buffer.alloc(0),
  'data/multi-chunk': prand(40_000, 'multi'),
  'data/zeros': Buffer.alloc(20_000),
};

/** What a path must read as: its file, or (the hardlink) the file it links to. */
function expected(path: string): Buffer {
  const data = FILES[path === 'etc/hard' ? 'etc/small' : path];
  if (!data) throw new Error(`served a path the tree does not have: ${path}`);
  return data;
}

function tree(): TarEntry[] {
  return [
    { name: 'etc/', type: 'dir', mode: 0o755 },
    { name: 'data/', type: 'dir', mode: 0o755 },
    ...Object.entries(FILES).map(([name, data]): TarEntry => ({ name, type: 'reg', mode: 0o644, mtime: 1_700_000_000, data })),
    { name: 'etc/link', type: 'symlink', linkName: 'small', mode: 0o777 },
    { name: 'etc/hard', type: 'hardlink', linkName: 'etc/small' },
  ];
}

/** Every regular file's content, read and verified chunk by chunk. */
async function readAll(index: LayerIndex, blob: BufferBlob): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  for (const [path, node] of index.walk()) {
    if (node.type !== 'reg') continue;
    const parts = await readVerifiedChunks(blob, { compression: index.compression, blobName: blob.name }, node.chunks.map((chunk) => ({ chunk, entry: path })));
    out.set(path, Buffer.concat(parts));
  }
  return out;
}

/** Refused with a coded error, or every byte it serves is right. */
async function refusedOrRight(blob: Buffer, options: OpenLayerOptions): Promise<'refused' | 'served'> {
  const b = new BufferBlob(blob, 'damaged');
  try {
    const { index } = await openLayer(b, options);
    const files = await readAll(index, b);
    for (const [path, data] of files) expect(data.equals(expected(path)), path).toBe(true);
    return 'served';
  } catch (e) {
    expect(e, String(e)).toBeInstanceOf(LazyAlsError);
    return 'refused';
  }
}

describe.each(FORMATS)('format conformance: %s', (format, write) => {
  const w = write(tree());

  it('round trip: opens as itself, every file reads back byte for byte, the record rebuilds the same tree', async () => {
    const blob = new BufferBlob(w.blob, format);
    const { index, record } = await openLayer(blob, w.options);
    expect(index.format).toBe(format);
    const files = await readAll(index, blob);
    expect(new Set(files.keys())).toEqual(new Set([...Object.keys(FILES), 'etc/hard']));
    for (const [path, data] of files) expect(data.equals(expected(path)), path).toBe(true);
    expect(index.lookup('etc/link' as never)?.linkTarget).toBe('small');
    expect(index.lookup('etc/hard' as never)?.ino).toBe(index.lookup('etc/small' as never)?.ino);
    const again = loadLayerRecord(record);
    expect([...again.walk()].map(([p, n]) => [p, n.type, n.size, n.mode])).toEqual([...index.walk()].map(([p, n]) => [p, n.type, n.size, n.mode]));
  });

  it('truncation: refused, never a wrong byte', async () => {
    for (const keep of [w.blob.length - 1, w.blob.length - 60, Math.floor(w.blob.length / 2), 600, 10]) {
      const cut = w.blob.subarray(0, keep);
      // The descriptor still names the whole blob (as a short registry answer would): size or digest catches it.
      expect(await refusedOrRight(cut, w.options), `kept ${keep} bytes`).toBe('refused');
      // Without a pinned size, the format's own structure must refuse it or serve only right bytes.
      const { descriptor, ...rest } = w.options;
      const unpinned: OpenLayerOptions = { ...rest, ...(descriptor?.annotations ? { descriptor: { annotations: descriptor.annotations } } : {}) };
      await refusedOrRight(cut, unpinned);
    }
  });

  it('corruption: one flipped byte anywhere is refused or serves only right bytes', async () => {
    const step = Math.max(1, Math.floor(w.blob.length / 97));
    let refused = 0;
    for (let at = 0; at < w.blob.length; at += step) {
      const bad = Buffer.from(w.blob);
      bad[at]! ^= 0x5a;
      if ((await refusedOrRight(bad, w.options)) === 'refused') refused++;
    }
    expect(refused).toBeGreaterThan(0);
  });

  it('bounds: more entries or a longer path than the limits allow is refused with a code', async () => {
    await expect(openLayer(new BufferBlob(w.blob, format), { ...w.options, limits: { ...DEFAULT_LIMITS, maxEntries: 3 } })).rejects.toBeInstanceOf(LazyAlsError);
    await expect(openLayer(new BufferBlob(w.blob, format), { ...w.options, limits: { ...DEFAULT_LIMITS, maxPathBytes: 6 } })).rejects.toBeInstanceOf(LazyAlsError);
  });
});
