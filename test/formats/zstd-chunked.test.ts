/**
 * zstd:chunked reader: round trip through the fixture writer (every entry kind, every file's content
 * through the verified chunk reader), position sources (annotation, footer, both, old variant), and
 * the LayerRecord round trip.
 */
import { byteStringFromText as B, toText } from '../../src/formats/byte-string.js';
import { parseRfc3339 } from '../../src/formats/rfc3339.js';
import { describe, expect, it } from 'vitest';
import { BufferBlob } from '../../src/core/blob.js';
import { parseDigest, type Digest } from '../../src/core/digest.js';
import { readVerifiedChunks } from '../../src/formats/chunk-reader.js';
import type { LayerIndex, LayerNode } from '../../src/formats/model.js';
import type { OpenLayerOptions } from '../../src/formats/layer-reader.js';
import { loadZstdChunkedRecord, openZstdChunked } from '../../src/formats/zstd-chunked/index.js';
import { normalizeEntryPath } from '../../src/formats/overlay-view.js';
import { buildZstdChunked, zstdChunkedSampleEntries, type ZstdChunkedBlob, type ZstdChunkedEntry, type ZstdChunkedOptions } from '../helpers/writers/zstd-chunked.js';

function optionsFor(w: ZstdChunkedBlob, extra: Partial<OpenLayerOptions> = {}): OpenLayerOptions {
  return { descriptor: { annotations: w.annotations, digest: parseDigest(w.blobDigest), size: w.blob.length }, ...extra };
}

async function contentOf(blob: BufferBlob, node: LayerNode): Promise<Buffer> {
  const parts = await readVerifiedChunks(blob, { compression: 'zstd', blobName: blob.name }, node.chunks.map((chunk) => ({ chunk })));
  return Buffer.concat(parts);
}

/** Every regular file of `entries` reads back verified and byte-identical. */
async function expectAllContent(index: LayerIndex, blob: BufferBlob, entries: readonly ZstdChunkedEntry[]): Promise<void> {
  let checked = 0;
  for (const e of entries) {
    if (e.type !== 'reg' || e.name.split('/').pop()!.startsWith('.wh.')) continue;
    const node = index.lookup(normalizeEntryPath(B(e.name)));
    expect(node, e.name).toBeDefined();
    expect(node!.size).toBe(e.data?.length ?? 0);
    expect((await contentOf(blob, node!)).equals(e.data ?? Buffer.alloc(0)), e.name).toBe(true);
    checked++;
  }
  expect(checked).toBeGreaterThan(5);
}

describe('openZstdChunked round trip', () => {
  const entries = zstdChunkedSampleEntries();
  for (const [label, opts] of [
    ['one chunk per file', {}],
    ['fixed chunks + holes', { chunkSize: 16 * 1024, holes: true }],
    ['no tar-split, zone +05:30', { tarSplit: false, zoneOffsetMinutes: 330 }],
    ['zone -08:00', { zoneOffsetMinutes: -480, chunkSize: 100_000 }],
  ] as [string, ZstdChunkedOptions][]) {
    it(`${label}: metadata and verified content`, async () => {
      const w = buildZstdChunked(entries, opts);
      const blob = new BufferBlob(w.blob, 'fixture');
      const { index, record } = await openZstdChunked(blob, optionsFor(w));
      expect(index.format).toBe('zstd-chunked');
      expect(index.compression).toBe('zstd');
      expect(index.tocDigest).toBe(w.tocDigest);
      expect(index.blobDigest).toBe(w.blobDigest);
      expect(index.diffId).toBeUndefined();
      expect(index.uncompressedSize).toBe(opts.tarSplit === false ? undefined : w.tar.length);
      expect(record.tocDigest).toBe(w.tocDigest);

      const tool = index.lookup(B('bin/tool'))!;
      expect(tool.type).toBe('reg');
      expect(tool.mode).toBe(0o4755);
      expect([tool.uid, tool.gid]).toEqual([1000, 1001]);
      expect([tool.mtimeSec, tool.mtimeNsec]).toEqual([1_700_000_000, 123_456_789]);
      expect(tool.xattrs.get('security.capability')).toEqual(Buffer.from('0100000200200000000000000000000000000000', 'hex'));
      expect(tool.xattrs.get('user.comment')?.toString()).toBe('hello');
      // Hardlink: the same node under two names.
      expect(index.lookup(B('bin/hard'))?.ino).toBe(tool.ino);
      const link = index.lookup(B('bin/link'))!;
      expect([link.type, link.linkTarget, link.size]).toEqual(['symlink', 'tool', 4]);
      const dnull = index.lookup(B('dev/null'))!;
      expect([dnull.type, dnull.rdevMajor, dnull.rdevMinor, dnull.mode]).toEqual(['char', 1, 3, 0o666]);
      const sda = index.lookup(B('dev/sda'))!;
      expect([sda.type, sda.rdevMajor, sda.rdevMinor, sda.gid]).toEqual(['block', 8, 0, 6]);
      const fifo = index.lookup(B('run/fifo'))!;
      expect([fifo.type, fifo.uid, fifo.gid]).toEqual(['fifo', 70_000, 70_001]);
      // Whiteout → char 0:0; the .wh. names themselves are hidden.
      const wh = index.lookup(B('etc/removed'))!;
      expect([wh.type, wh.rdevMajor, wh.rdevMinor, wh.mode, wh.mtimeSec]).toEqual(['char', 0, 0, 0, 1_650_000_000]);
      expect(index.lookup(B('etc/.wh.removed'))).toBeUndefined();
      expect(index.lookup(B('opq/.wh..wh..opq'))).toBeUndefined();
      const opq = index.lookup(B('opq'))!;
      expect(opq.xattrs.get('trusted.overlay.opaque')?.toString()).toBe('y');
      expect(opq.xattrs.get('user.overlay.opaque')?.toString()).toBe('y');
      expect(opq.mode).toBe(0o700);
      expect(index.lookup(B('unicode/日本語-ñ-é.txt'))?.type).toBe('reg');
      expect(index.lookup(B('empty'))).toMatchObject({ type: 'reg', size: 0, mode: 0o600, chunks: [] });
      const big = index.lookup(B('big/data.bin'))!;
      expect([big.mtimeSec, big.mtimeNsec]).toEqual([1_234_567_890, 1]);
      if (opts.holes) {
        expect(big.chunks.length).toBeGreaterThan(10);
        expect(big.chunks.some((c) => c.zeros)).toBe(true);
      } else if (!opts.chunkSize) {
        expect(big.chunks.length).toBe(1);
        expect(big.chunks[0]!.digest).toBe(big.digest);
      }
      expect(index.uids).toEqual([0, 1000, 70_000]);
      await expectAllContent(index, blob, entries);
    });
  }

  it('a hardlinked file has nlink 2', async () => {
    const w = buildZstdChunked(entries);
    const { index } = await openZstdChunked(new BufferBlob(w.blob), optionsFor(w));
    expect(index.lookup(B('bin/tool'))!.nlink).toBe(2);
  });

  it('finds the TOC from the annotation alone (footer cut off) and from the footer alone', async () => {
    const w = buildZstdChunked(entries, { chunkSize: 50_000 });
    const noFooter = new BufferBlob(w.blob.subarray(0, w.blob.length - 72), 'no-footer');
    const a = await openZstdChunked(noFooter, { descriptor: { annotations: w.annotations } });
    expect(a.index.uncompressedSize).toBe(w.tar.length);
    await expectAllContent(a.index, noFooter, entries);
    const blob = new BufferBlob(w.blob);
    const onlyChecksum = { 'io.github.containers.zstd-chunked.manifest-checksum': w.tocDigest };
    const b = await openZstdChunked(blob, { descriptor: { annotations: onlyChecksum } });
    expect(b.index.uncompressedSize).toBe(w.tar.length);
    await expectAllContent(b.index, blob, entries);
    // The TOC digest may also come from the caller (store key) with no annotations at all.
    const c = await openZstdChunked(blob, { expectedTocDigest: w.tocDigest as Digest });
    expect(c.index.tocDigest).toBe(w.tocDigest);
  });

  it('allowUnpinnedToc computes and reports the TOC digest', async () => {
    const w = buildZstdChunked(entries);
    const { index } = await openZstdChunked(new BufferBlob(w.blob), { allowUnpinnedToc: true });
    expect(index.tocDigest).toBe(w.tocDigest);
  });

  it('reads the old (2020–2022) variant: 40-byte footer, io.containers.* annotations', async () => {
    const w = buildZstdChunked(entries, { variant: 'old', chunkSize: 64 * 1024 });
    expect(w.blob.subarray(w.blob.length - 8).toString('latin1')).toBe('GnUlInUx');
    const blob = new BufferBlob(w.blob);
    const { index } = await openZstdChunked(blob, { descriptor: { annotations: w.annotations } });
    expect(index.tocDigest).toBe(w.tocDigest);
    await expectAllContent(index, blob, entries);
    const footerOnly = { 'io.containers.zstd-chunked.manifest-checksum': w.tocDigest };
    const r = await openZstdChunked(blob, { descriptor: { annotations: footerOnly } });
    expect(r.index.nodeCount).toBe(index.nodeCount);
    // 2022-11…2023-06 layers: new annotation names, still the 40-byte footer (located by annotation).
    const renamed = Object.fromEntries(Object.entries(w.annotations).map(([k, v]) => [k.replace('io.containers.', 'io.github.containers.'), v]));
    const m = await openZstdChunked(blob, { descriptor: { annotations: renamed } });
    await expectAllContent(m.index, blob, entries);
  });

  it('accepts keys in any case, like the reference parser', async () => {
    const w = buildZstdChunked(entries, {
      chunkSize: 40_000,
      transformManifestJson: (s) => s.replace(/"name":/g, '"NAME":').replace(/"chunkDigest":/g, '"CHUNKDIGEST":').replace(/"modtime":/g, '"ModTime":'),
    });
    const blob = new BufferBlob(w.blob);
    const { index } = await openZstdChunked(blob, optionsFor(w));
    expect(index.lookup(B('bin/tool'))?.mtimeNsec).toBe(123_456_789);
    await expectAllContent(index, blob, entries);
  });
});

describe('TOC JSON details', () => {
  it('escaped strings, Go-style HTML escapes and far-off times decode like Go would', async () => {
    const es: ZstdChunkedEntry[] = [
      { name: 'q"uote\\back<tag>&', type: 'reg', data: Buffer.from('q') },
      { name: 'old', type: 'reg', mtime: 1, data: Buffer.from('o') },
    ];
    const w = buildZstdChunked(es, {
      // Only the TOC is edited: without a tar-split there is no tar header for it to disagree with.
      tarSplit: false,
      transformManifestJson: (s) =>
        s
          .replace('<tag>&', '\\u003ctag\\u003e\\u0026')
          .replace(/"modtime":"1970-01-01T00:00:01Z"/, '"modtime":"0001-01-01T00:00:00.1234567891-00:01"'),
    });
    const blob = new BufferBlob(w.blob);
    const { index } = await openZstdChunked(blob, optionsFor(w));
    expect(index.lookup(B('q"uote\\back<tag>&'))?.type).toBe('reg');
    // 0001-01-01T00:01:00Z, fraction truncated to nanoseconds; served as 0 (before the epoch,
    // containers/storage's unpacker clamps it).
    expect(parseRfc3339('0001-01-01T00:00:00.1234567891-00:01')).toEqual({ sec: -62135596800 + 60, nsec: 123_456_789 });
    expect([index.lookup(B('old'))!.mtimeSec, index.lookup(B('old'))!.mtimeNsec]).toEqual([0, 0]);
  });
});

describe('zstd:chunked LayerRecord', () => {
  it('rebuilds the identical index without the blob', async () => {
    const w = buildZstdChunked(zstdChunkedSampleEntries(), { chunkSize: 20_000, holes: true });
    const { index, record } = await openZstdChunked(new BufferBlob(w.blob), optionsFor(w, { diffId: parseDigest(w.diffId) }));
    const stored = JSON.parse(JSON.stringify(record)) as typeof record;
    expect(stored.params).toEqual({
      manifestOffset: w.manifestOffset,
      manifestLength: w.manifestLength,
      manifestUncompressedLength: Buffer.byteLength(w.manifestJson),
      tarSplitUncompressedLength: expect.any(Number),
    });
    // The tar-split is kept too: a rebuilt index is bound to the tar by the same check.
    expect(typeof stored.tarSplit).toBe('string');
    expect(Buffer.from(stored.payload, 'base64').equals(w.blob.subarray(w.manifestOffset, w.manifestOffset + w.manifestLength))).toBe(true);
    expect(stored.uncompressedSize).toBe(w.tar.length);
    const again = loadZstdChunkedRecord(stored);
    const flat = (ix: LayerIndex) =>
      [...ix.walk()].map(([p, n]) => ({ p, ino: n.ino, type: n.type, mode: n.mode, uid: n.uid, size: n.size, mt: [n.mtimeSec, n.mtimeNsec], chunks: n.chunks, x: [...n.xattrs], nlink: n.nlink }));
    expect(flat(again)).toEqual(flat(index));
    expect(again.tocDigest).toBe(index.tocDigest);
    expect(again.uncompressedSize).toBe(index.uncompressedSize);
    expect(again.blobDigest).toBe(index.blobDigest);
    expect(again.diffId).toBeUndefined();
  });

  it('rejects a tampered payload or digest', async () => {
    const w = buildZstdChunked(zstdChunkedSampleEntries());
    const { record } = await openZstdChunked(new BufferBlob(w.blob), optionsFor(w));
    const raw = Buffer.from(record.payload, 'base64');
    raw[raw.length >> 1]! ^= 1;
    expect(() => loadZstdChunkedRecord({ ...record, payload: raw.toString('base64') })).toThrow(expect.objectContaining({ code: 'TOC_DIGEST_MISMATCH' }));
    const otherDigest = 'sha256:' + '0'.repeat(64);
    expect(() => loadZstdChunkedRecord({ ...record, tocDigest: otherDigest })).toThrow(expect.objectContaining({ code: 'TOC_DIGEST_MISMATCH' }));
    expect(() => loadZstdChunkedRecord({ ...record, payload: record.payload.slice(0, -4) })).toThrow(expect.objectContaining({ code: 'TOC_MALFORMED' }));
    expect(() => loadZstdChunkedRecord({ ...record, format: 'estargz' })).toThrow(expect.objectContaining({ code: 'FORMAT_CONFLICT' }));
    expect(() => loadZstdChunkedRecord({ ...record, params: { ...record.params, manifestUncompressedLength: 3 } })).toThrow(
      expect.objectContaining({ code: 'DECOMPRESS_LIMIT' }),
    );
  });
});
