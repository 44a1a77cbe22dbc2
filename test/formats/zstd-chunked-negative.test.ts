/**
 * zstd:chunked reader against hostile or broken input: every case must end in a typed FormatError
 * with the expected code (never wrong bytes, never a plain Error).
 */
import { describe, expect, it } from 'vitest';
import { compress } from 'zstd-napi';
import { BufferBlob } from '../../src/core/blob.js';
import { DEFAULT_LIMITS } from '../../src/core/limits.js';
import { LazyAlsError } from '../../src/core/errors.js';
import { readVerifiedChunks } from '../../src/formats/chunk-reader.js';
import type { LayerNode } from '../../src/formats/model.js';
import type { OpenLayerOptions } from '../../src/formats/layer-reader.js';
import { decodeZstdExact, openZstdChunked } from '../../src/formats/zstd-chunked/index.js';
import { buildZstdChunked, pseudoRandomBytes, zstdChunkedSampleEntries, type ZstdChunkedBlob, type ZstdChunkedEntry, type ZstdChunkedOptions } from '../helpers/writers/zstd-chunked.js';
import { asByteString } from '../../src/formats/byte-string.js';

const POS = 'io.github.containers.zstd-chunked.manifest-position';
const SUM = 'io.github.containers.zstd-chunked.manifest-checksum';
const TS_POS = 'io.github.containers.zstd-chunked.tarsplit-position';

const entries = zstdChunkedSampleEntries();
const build = (opts: ZstdChunkedOptions = {}, es: readonly ZstdChunkedEntry[] = entries): ZstdChunkedBlob => buildZstdChunked(es, opts);
const open = (blob: Buffer, annotations: Record<string, string>, extra: Partial<OpenLayerOptions> = {}) =>
  openZstdChunked(new BufferBlob(blob, 'neg'), { descriptor: { annotations }, ...extra });

async function expectCode(p: Promise<unknown>, code: string): Promise<LazyAlsError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, `expected ${code}`).toBeInstanceOf(LazyAlsError);
  expect((err as LazyAlsError).code).toBe(code);
  return err as LazyAlsError;
}

const read = (blob: Buffer, node: LayerNode) =>
  readVerifiedChunks(new BufferBlob(blob, 'neg'), { compression: 'zstd', blobName: 'neg' }, node.chunks.map((chunk) => ({ chunk, entry: 'x' })));

describe('TOC authentication and location', () => {
  it('wrong manifest bytes: TOC_DIGEST_MISMATCH before any decompression', async () => {
    const w = build();
    const bad = Buffer.from(w.blob);
    // Garbage that is not zstd at all: decompressing it first would give DECOMPRESS_FAILED.
    pseudoRandomBytes(w.manifestLength, 99).copy(bad, w.manifestOffset);
    await expectCode(open(bad, w.annotations), 'TOC_DIGEST_MISMATCH');
    await expectCode(open(w.blob, { ...w.annotations, [SUM]: 'sha256:' + 'ab'.repeat(32) }), 'TOC_DIGEST_MISMATCH');
    await expectCode(open(w.blob, w.annotations, { expectedTocDigest: ('sha256:' + 'cd'.repeat(32)) as never }), 'FORMAT_CONFLICT');
  });

  it('no TOC digest anywhere: TOC_MISSING', async () => {
    const w = build();
    await expectCode(open(w.blob, {}), 'TOC_MISSING');
    const { [SUM]: _drop, ...rest } = w.annotations;
    await expectCode(open(w.blob, rest), 'TOC_MISSING');
  });

  it('position outside the blob: TOC_OUT_OF_RANGE; malformed position: FOOTER_INVALID', async () => {
    const w = build();
    const noFooter = w.blob.subarray(0, w.blob.length - 72);
    const [, len, ulen] = w.annotations[POS]!.split(':');
    await expectCode(open(noFooter, { ...w.annotations, [POS]: `${noFooter.length - 10}:${len}:${ulen}:1` }), 'TOC_OUT_OF_RANGE');
    await expectCode(open(noFooter, { ...w.annotations, [POS]: `${2 ** 52}:${len}:${ulen}:1` }), 'TOC_OUT_OF_RANGE');
    await expectCode(open(noFooter, { ...w.annotations, [POS]: `3:${len}:${ulen}:1` }), 'TOC_OUT_OF_RANGE');
    // Inside the blob but not at the manifest's skippable frame.
    await expectCode(open(noFooter, { ...w.annotations, [POS]: `100:${len}:${ulen}:1` }), 'TOC_OUT_OF_RANGE');
    await expectCode(open(noFooter, { ...w.annotations, [POS]: `${w.manifestOffset}:${len}:${ulen}:2` }), 'FOOTER_INVALID');
    await expectCode(open(noFooter, { ...w.annotations, [POS]: `${w.manifestOffset}:-1:${ulen}:1` }), 'FOOTER_INVALID');
    await expectCode(open(noFooter, { ...w.annotations, [POS]: '1:2:3' }), 'FOOTER_INVALID');
    // No annotation and no footer: nothing says where the TOC is.
    await expectCode(open(noFooter, { [SUM]: w.tocDigest }), 'FOOTER_INVALID');
    // A truncated blob cut inside the metadata.
    await expectCode(open(w.blob.subarray(0, w.manifestOffset + 5), w.annotations), 'TOC_OUT_OF_RANGE');
  });

  it('footer and annotation disagree: FORMAT_CONFLICT', async () => {
    const w = build();
    const [off, len, ulen] = w.annotations[POS]!.split(':');
    await expectCode(open(w.blob, { ...w.annotations, [POS]: `${off}:${len}:${Number(ulen) + 1}:1` }), 'FORMAT_CONFLICT');
    const [toff, tlen, tulen] = w.annotations[TS_POS]!.split(':');
    await expectCode(open(w.blob, { ...w.annotations, [TS_POS]: `${toff}:${tlen}:${Number(tulen) - 1}` }), 'FORMAT_CONFLICT');
    // Footer fields corrupted (magic intact).
    const bad = Buffer.from(w.blob);
    bad.writeBigUInt64LE(BigInt(w.manifestOffset + 1), bad.length - 64);
    await expectCode(open(bad, w.annotations), 'FORMAT_CONFLICT');
    bad.writeBigUInt64LE(2n ** 63n, bad.length - 64);
    await expectCode(open(bad, w.annotations), 'FOOTER_INVALID');
    // Both zstd:chunked and eStargz annotations, as containers/storage refuses.
    await expectCode(open(w.blob, { ...w.annotations, 'containerd.io/snapshot/stargz/toc.digest': w.tocDigest }), 'FORMAT_CONFLICT');
    const sizeLie = openZstdChunked(new BufferBlob(w.blob), { descriptor: { annotations: w.annotations, size: w.blob.length + 1 } });
    await expectCode(sizeLie, 'FORMAT_CONFLICT');
  });

  it('the 40-byte footer alone is not believed without the old annotations', async () => {
    const w = build({ variant: 'old' });
    await expectCode(open(w.blob, { [SUM]: w.tocDigest }), 'FOOTER_INVALID');
    await expectCode(open(w.blob, { ...w.annotations, 'containerd.io/snapshot/stargz/toc.digest': w.tocDigest }), 'FORMAT_CONFLICT');
  });

  it('over-limit sizes are refused before reading or allocating', async () => {
    const w = build({ chunkSize: 32 * 1024 });
    await expectCode(open(w.blob, w.annotations, { limits: { ...DEFAULT_LIMITS, maxTocBytes: 100 } }), 'TOC_TOO_LARGE');
    await expectCode(open(w.blob, w.annotations, { limits: { ...DEFAULT_LIMITS, maxEntries: 5 } }), 'TOC_TOO_LARGE');
    await expectCode(open(w.blob, w.annotations, { limits: { ...DEFAULT_LIMITS, maxChunkBytes: 1000 } }), 'CHUNK_INVALID');
    const noFooter = w.blob.subarray(0, w.blob.length - 72);
    const [off, len] = w.annotations[POS]!.split(':');
    await expectCode(open(noFooter, { ...w.annotations, [POS]: `${off}:${len}:${2 ** 40}:1` }), 'TOC_TOO_LARGE');
  });

  it('announced uncompressed length wrong: DECOMPRESS_LIMIT / DECOMPRESS_FAILED', async () => {
    const w = build();
    const noFooter = w.blob.subarray(0, w.blob.length - 72);
    const [off, len, ulen] = w.annotations[POS]!.split(':');
    await expectCode(open(noFooter, { ...w.annotations, [POS]: `${off}:${len}:${Number(ulen) - 1}:1` }), 'DECOMPRESS_LIMIT');
    await expectCode(open(noFooter, { ...w.annotations, [POS]: `${off}:${len}:${Number(ulen) + 1}:1` }), 'DECOMPRESS_FAILED');
  });

  it('a TOC bomb stops one byte past the announced length', () => {
    const bomb = compress(Buffer.alloc(256 * 1024 * 1024));
    expect(() => decodeZstdExact(bomb, 1000, 'bomb')).toThrow(expect.objectContaining({ code: 'DECOMPRESS_LIMIT' }));
    expect(() => decodeZstdExact(bomb.subarray(0, bomb.length - 3), 256 * 1024 * 1024, 'cut')).toThrow(expect.objectContaining({ code: 'DECOMPRESS_FAILED' }));
    expect(() => decodeZstdExact(Buffer.from('not zstd at all'), 10, 'junk')).toThrow(expect.objectContaining({ code: 'DECOMPRESS_FAILED' }));
  });
});

describe('TOC JSON', () => {
  it('trailing data after the top-level object: TOC_MALFORMED (whitespace is fine)', async () => {
    await expectCode(((w) => open(w.blob, w.annotations))(build({ transformManifestJson: (s) => s + '{}' })), 'TOC_MALFORMED');
    await expectCode(((w) => open(w.blob, w.annotations))(build({ transformManifestJson: (s) => s + ' x' })), 'TOC_MALFORMED');
    const ok = build({ transformManifestJson: (s) => s + ' \n\t' });
    await expect(open(ok.blob, ok.annotations)).resolves.toBeDefined();
  });

  it('keys that fold onto each other, wrong types, wrong version: TOC_MALFORMED', async () => {
    const cases: ((s: string) => string)[] = [
      (s) => s.replace('"version":1', '"version":1,"VERSION":1'),
      (s) => s.replace('"version":1', '"version":2'),
      (s) => s.replace('"version":1', '"version":"1"'),
      (s) => s.replace('"version":1', '"version":1.0'),
      (s) => s.replace('"name":"bin/tool"', '"name":"bin/tool","Name":"bin/other"'),
      (s) => s.replace('"mode":420', '"mode":"420"'),
      (s) => s.replace('"uid":1000', '"uid":1e3'),
      (s) => s.replace(/"modtime":"[^"]*"/, '"modtime":"yesterday"'),
      (s) => s.replace(/"modtime":"[^"]*"/, '"modtime":"2023-02-30T00:00:00Z"'),
      (s) => s.replace('"user.comment":"aGVsbG8="', '"user.comment":"aGVsbG8"'),
      (s) => s.replace('"entries":[', '"entries":{"a":['),
      (s) => s.replace(/"digest":"sha256:[0-9a-f]+"/, '"digest":"sha256:XYZ"'),
      (s) => '[' + s + ']',
      (s) => s.slice(0, -1),
    ];
    for (const t of cases) {
      const w = build({ transformManifestJson: t });
      await expectCode(open(w.blob, w.annotations), 'TOC_MALFORMED');
    }
  });

  it('negative or huge integers: ENTRY_INVALID', async () => {
    for (const t of [(s: string) => s.replace('"uid":1000', '"uid":-1'), (s: string) => s.replace('"uid":1000', '"uid":99999999999999999999')]) {
      const w = build({ transformManifestJson: t });
      await expectCode(open(w.blob, w.annotations), 'ENTRY_INVALID');
    }
    const w = build({ mutateToc: (toc) => void (toc.entries[0]!['type'] = 'sparse') });
    await expectCode(open(w.blob, w.annotations), 'ENTRY_INVALID');
  });

  it('hostile paths: ENTRY_PATH_UNSAFE', async () => {
    for (const name of ['../../etc/passwd', '/etc/shadow', 'a/../../b', 'x\u0000y', 'a/' + 'n'.repeat(300)]) {
      const w = build({}, [{ name: 'ok', type: 'reg', data: Buffer.from('x') }, { name, type: 'reg', data: Buffer.from('evil') }]);
      await expectCode(open(w.blob, w.annotations), 'ENTRY_PATH_UNSAFE');
    }
    const w = build({}, [{ name: 'ok', type: 'reg', data: Buffer.from('x') }, { name: 'link', type: 'hardlink', linkName: '../../etc/passwd' }]);
    await expectCode(open(w.blob, w.annotations), 'ENTRY_PATH_UNSAFE');
    const dup = build({ tarSplit: false }, [{ name: 'a', type: 'reg', data: Buffer.from('1') }, { name: './a', type: 'reg', data: Buffer.from('2') }]);
    await expectCode(open(dup.blob, dup.annotations), 'ENTRY_DUPLICATE');
  });
});

describe('chunks', () => {
  const bigEntries: ZstdChunkedEntry[] = [
    { name: 'a', type: 'reg', data: pseudoRandomBytes(100_000, 1) },
    { name: 'b', type: 'reg', data: pseudoRandomBytes(20_000, 2) } /* one chunk */,
  ];
  const chunked = { chunkSize: 30_000 };
  const regOf = (toc: { entries: Record<string, unknown>[] }, name: string) => toc.entries.find((e) => e['name'] === name && e['type'] === 'reg')!;

  it('corrupted chunk frame: CHUNK_DIGEST_MISMATCH or DECOMPRESS_FAILED for that file only', async () => {
    const w = build(chunked, bigEntries);
    const frames = w.chunkFrames.get('a')!;
    for (const at of [frames[1]!.offset + 10, frames[1]!.end - 2, frames[1]!.offset]) {
      const bad = Buffer.from(w.blob);
      bad[at]! ^= 0x55;
      const { index } = await open(bad, w.annotations);
      const err = await read(bad, index.lookup(asByteString('a'))!).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(LazyAlsError);
      expect(['CHUNK_DIGEST_MISMATCH', 'DECOMPRESS_FAILED']).toContain((err as LazyAlsError).code);
      expect(Buffer.concat(await read(bad, index.lookup(asByteString('b'))!)).equals(bigEntries[1]!.data!)).toBe(true);
    }
  });

  it('TOC lying about a chunk digest (authentic TOC): CHUNK_DIGEST_MISMATCH on read', async () => {
    const w = build({
      ...chunked,
      mutateToc: (toc) => {
        const c = toc.entries.find((e) => e['type'] === 'chunk')!;
        c['chunkDigest'] = 'sha256:' + '1'.repeat(64);
      },
    }, bigEntries);
    const { index } = await open(w.blob, w.annotations);
    const err = await expectCode(read(w.blob, index.lookup(asByteString('a'))!), 'CHUNK_DIGEST_MISMATCH');
    expect(err.context.chunk).toBe('sha256:' + '1'.repeat(64));
    expect(err.context.blob).toBe('neg');
  });

  it('extents that overlap, go backwards, reach the TOC, or miss pieces: CHUNK_INVALID', async () => {
    const mutations: ((toc: { entries: Record<string, unknown>[] }, w?: ZstdChunkedBlob) => void)[] = [
      (toc) => void (regOf(toc, 'b')['offset'] = regOf(toc, 'a')['offset']),
      (toc) => void (regOf(toc, 'a')['endOffset'] = regOf(toc, 'b')['endOffset']),
      (toc) => void (regOf(toc, 'a')['endOffset'] = 10 ** 9),
      (toc) => void (regOf(toc, 'a')['endOffset'] = regOf(toc, 'a')['offset']),
      (toc) => void delete regOf(toc, 'b')['digest'],
      (toc) => void delete regOf(toc, 'b')['endOffset'],
      (toc) => void (regOf(toc, 'a')['size'] = 100_001),
      (toc) => void (toc.entries.find((e) => e['type'] === 'chunk')!['chunkOffset'] = 29_999),
      (toc) => void (toc.entries.find((e) => e['type'] === 'chunk')!['name'] = 'b'),
      (toc) => void (toc.entries.find((e) => e['type'] === 'chunk')!['chunkType'] = 'sparse'),
      (toc) => void toc.entries.unshift({ type: 'chunk', name: 'a', offset: 0, chunkSize: 1, chunkDigest: 'sha256:' + '1'.repeat(64) }),
      (toc) => void (regOf(toc, 'a')['digest'] = 'sha256:' + '0'.repeat(64)) /* multi-chunk: file digest is informational */,
    ];
    for (const [i, m] of mutations.entries()) {
      const w = build({ ...chunked, tarSplit: false, mutateToc: (toc) => m(toc) }, bigEntries);
      if (i === mutations.length - 1) {
        await expect(open(w.blob, w.annotations)).resolves.toBeDefined();
        continue;
      }
      await expectCode(open(w.blob, w.annotations), 'CHUNK_INVALID').catch((e: unknown) => {
        throw new Error(`mutation #${i}: ${String(e)}`);
      });
    }
  });

  it('decompression bomb in a chunk frame: reads only what the chunk needs', async () => {
    const zeros = Buffer.alloc(1024 * 1024);
    const bombFrame = compress(Buffer.alloc(512 * 1024 * 1024));
    const w = build({ frameOverride: (name) => (name === 'z' ? bombFrame : undefined) }, [{ name: 'z', type: 'reg', data: zeros }]);
    const { index } = await open(w.blob, w.annotations);
    const before = process.memoryUsage().rss;
    const got = Buffer.concat(await read(w.blob, index.lookup(asByteString('z'))!));
    const grown = process.memoryUsage().rss - before;
    expect(got.equals(zeros)).toBe(true);
    // Inflating the whole frame would need 512 MiB; the bounded decoder keeps far below that.
    expect(grown).toBeLessThan(200 * 1024 * 1024);
  });

  it('zeros chunks are verified too (a lying zeros digest fails)', async () => {
    const data = Buffer.concat([pseudoRandomBytes(5000, 4), Buffer.alloc(4096), pseudoRandomBytes(10, 5)]);
    const w = build({
      holes: true,
      mutateToc: (toc) => {
        const z = toc.entries.find((e) => e['chunkType'] === 'zeros')!;
        z['chunkDigest'] = 'sha256:' + '2'.repeat(64);
      },
    }, [{ name: 'h', type: 'reg', data }]);
    const { index } = await open(w.blob, w.annotations);
    expect(index.lookup(asByteString('h'))!.chunks.filter((c) => c.zeros).length).toBe(1);
    await expectCode(read(w.blob, index.lookup(asByteString('h'))!), 'CHUNK_DIGEST_MISMATCH');
  });
});

describe('tar-split', () => {
  it('digest mismatch: TOC_DIGEST_MISMATCH', async () => {
    const w = build({ mutateToc: (toc) => void (toc.tarSplitDigest = 'sha256:' + '3'.repeat(64)) });
    await expectCode(open(w.blob, w.annotations), 'TOC_DIGEST_MISMATCH');
    const good = build();
    const bad = Buffer.from(good.blob);
    bad[good.tarSplitOffset! + 3]! ^= 1;
    await expectCode(open(bad, good.annotations), 'TOC_DIGEST_MISMATCH');
  });

  it('names or sizes disagreeing with the TOC: FORMAT_CONFLICT', async () => {
    const edits: ((s: string) => string)[] = [
      (s) => s.replace('"name":"bin/tool"', '"name":"bin/tooo"'),
      (s) => s.split('\n').filter((l) => !l.includes('"name":"empty"')).join('\n'),
      (s) => s.replace('"name":"opq/kept","size":5', '"name":"opq/kept","size":6'),
      (s) => s.replace('"name":"empty"', '"name":"empty","size":3'),
    ];
    for (const e of edits) {
      const w = build({ transformTarSplit: e });
      await expectCode(open(w.blob, w.annotations), 'FORMAT_CONFLICT');
    }
    const extra = build({ mutateToc: (toc) => void toc.entries.push({ type: 'reg', name: 'ghost', mode: 420 }) });
    await expectCode(open(extra.blob, extra.annotations), 'FORMAT_CONFLICT');
  });

  it('garbage lines: TOC_MALFORMED; TOC names a tar-split the layer lacks: FORMAT_CONFLICT', async () => {
    await expectCode(((w) => open(w.blob, w.annotations))(build({ transformTarSplit: (s) => s + '{oops\n' })), 'TOC_MALFORMED');
    await expectCode(((w) => open(w.blob, w.annotations))(build({ transformTarSplit: (s) => s.replace('"type":1', '"type":7') })), 'TOC_MALFORMED');
    const w = build();
    const noFooter = w.blob.subarray(0, w.blob.length - 72);
    const { [TS_POS]: _drop, ...rest } = w.annotations;
    await expectCode(open(noFooter, rest), 'FORMAT_CONFLICT');
  });
});
