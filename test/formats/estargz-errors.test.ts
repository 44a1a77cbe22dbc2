import { describe, expect, it } from 'vitest';
import { gzipSync } from 'node:zlib';
import { compress as zstdCompress } from 'zstd-napi';
import { BufferBlob } from '../../src/core/blob.js';
import type { Digest } from '../../src/core/digest.js';
import { DEFAULT_LIMITS } from '../../src/core/limits.js';
import { LazyAlsError } from '../../src/core/errors.js';
import { readVerifiedChunks } from '../../src/formats/chunk-reader.js';
import { FormatError } from '../../src/formats/errors.js';
import { openEStargz, openEStargzZstd } from '../../src/formats/estargz/index.js';
import type { OpenLayerOptions, OpenedLayer } from '../../src/formats/layer-reader.js';
import type { LayerIndex } from '../../src/formats/model.js';
import { tarHeaders, type TarEntry } from '../helpers/writers/tar.js';
import {
  buildEStargz, estargzFooter, marshalIndent, prand, sampleEntries, sha256, skippableFrame, tocTarEntry, zstdFooterFrame,
  type EStargzFixture, type EStargzWriterOptions, type JTOC,
} from '../helpers/writers/estargz.js';
import { asByteString } from '../../src/formats/byte-string.js';

const BLOB = 'bad-blob';

function open(blob: Buffer, tocDigest: Digest, opts: Partial<OpenLayerOptions> = {}, zstd = false): Promise<OpenedLayer> {
  return (zstd ? openEStargzZstd : openEStargz)(new BufferBlob(blob, BLOB), { expectedTocDigest: tocDigest, ...opts });
}

async function readAll(index: LayerIndex, blob: Buffer): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  const b = new BufferBlob(blob, BLOB);
  for (const [path, node] of index.walk()) {
    if (node.type !== 'reg' || node.size === 0) continue;
    const parts = await readVerifiedChunks(b, { compression: index.compression, blobName: BLOB }, node.chunks.map((chunk) => ({ chunk, entry: path })));
    out.set(path, Buffer.concat(parts));
  }
  return out;
}

async function failure(p: Promise<unknown>): Promise<FormatError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(FormatError);
    return e as FormatError;
  }
  throw new Error('expected a FormatError, but it succeeded');
}

async function expectCode(p: Promise<unknown>, code: string, entry?: string): Promise<FormatError> {
  const e = await failure(p);
  expect(e.code, e.message).toBe(code);
  expect(e.context.blob).toBe(BLOB);
  if (entry !== undefined) expect(e.context.entry).toBe(entry);
  return e;
}

/** Build with a TOC edit; the fixture's tocDigest is the (correct) digest of the edited TOC. */
function edited(edit: (toc: JTOC, base: EStargzFixture) => void, entries: TarEntry[] = sampleEntries(), opts: EStargzWriterOptions = {}): EStargzFixture {
  const base = buildEStargz(entries, opts);
  return buildEStargz(entries, { ...opts, editToc: (t) => edit(t, base) });
}

const find = (toc: JTOC, name: string): Record<string, unknown> => toc.entries.find((e) => e['name'] === name)!;

describe('eStargz readers: TOC and footer rejects', () => {
  it('wrong TOC digest: TOC_DIGEST_MISMATCH, checked before the JSON is parsed', async () => {
    const fx = buildEStargz(sampleEntries(), { tocJson: () => Buffer.from('this is not json') });
    await expectCode(open(fx.blob, sha256(Buffer.from('something else'))), 'TOC_DIGEST_MISMATCH');
    // With the right digest the same bytes reach the parser and fail there: the order is proven.
    await expectCode(open(fx.blob, fx.tocDigest), 'TOC_MALFORMED');
    const z = buildEStargz(sampleEntries(), { compression: 'zstd', tocJson: () => Buffer.from('nope') });
    await expectCode(open(z.blob, sha256(Buffer.from('x')), {}, true), 'TOC_DIGEST_MISMATCH');
  });

  it('trailing garbage after the JSON object is rejected', async () => {
    for (const compression of ['gzip', 'zstd'] as const) {
      const fx = buildEStargz(sampleEntries(), { compression, tocJson: (j) => Buffer.concat([j, Buffer.from('xyz')]) });
      await expectCode(open(fx.blob, fx.tocDigest, {}, compression === 'zstd'), 'TOC_MALFORMED');
    }
  });

  it('truncated footer / blob / tiny blob', async () => {
    const fx = buildEStargz(sampleEntries());
    await expectCode(open(fx.blob.subarray(0, fx.blob.length - 1), fx.tocDigest), 'FOOTER_INVALID');
    await expectCode(open(fx.blob.subarray(0, fx.blob.length >> 1), fx.tocDigest), 'FOOTER_INVALID');
    await expectCode(open(fx.blob.subarray(0, 20), fx.tocDigest), 'FOOTER_TRUNCATED');
    const z = buildEStargz(sampleEntries(), { compression: 'zstd' });
    await expectCode(open(z.blob.subarray(0, z.blob.length - 3), z.tocDigest, {}, true), 'FOOTER_INVALID');
    await expectCode(open(z.blob.subarray(0, 30), z.tocDigest, {}, true), 'FOOTER_TRUNCATED');
    // A TOC member cut short (footer moved up): gunzip runs out before the JSON is complete.
    const cut = Buffer.concat([fx.blob.subarray(0, fx.tocOffset + 40), estargzFooter(fx.tocOffset)]);
    const e = await failure(open(cut, fx.tocDigest));
    expect(['DECOMPRESS_FAILED', 'TAR_INVALID']).toContain(e.code);
  });

  it('footer fields: bad hex, wrong subfield length, TOC offset beyond the blob or inside the footer', async () => {
    const fx = buildEStargz(sampleEntries());
    const body = fx.blob.subarray(0, fx.blob.length - 51);
    const withFooter = (f: Buffer): Buffer => Buffer.concat([body, f]);
    const badHex = estargzFooter(fx.tocOffset);
    badHex.write('zz', 16, 'latin1');
    await expectCode(open(withFooter(badHex), fx.tocDigest), 'FOOTER_INVALID');
    const badLen = estargzFooter(fx.tocOffset);
    badLen.writeUInt16LE(21, 14);
    await expectCode(open(withFooter(badLen), fx.tocDigest), 'FOOTER_INVALID');
    await expectCode(open(withFooter(estargzFooter(fx.blob.length + 100)), fx.tocDigest), 'TOC_OUT_OF_RANGE');
    await expectCode(open(withFooter(estargzFooter(fx.blob.length - 51)), fx.tocDigest), 'TOC_OUT_OF_RANGE');
    const huge = estargzFooter(0);
    huge.write('ffffffffffffffff', 16, 'latin1');
    await expectCode(open(withFooter(huge), fx.tocDigest), 'FOOTER_INVALID');
    // A TOC offset pointing at a payload member: its first tar header is not stargz.index.json.
    const e = await failure(open(withFooter(estargzFooter(0)), fx.tocDigest));
    expect(['TOC_MALFORMED', 'TOC_DIGEST_MISMATCH']).toContain(e.code);
  });

  it('estargz-zstd footer: wrong type, TOC range outside the blob, missing skippable header', async () => {
    const z = buildEStargz(sampleEntries(), { compression: 'zstd' });
    const tail = z.blob.subarray(z.blob.length - 40);
    const [clen, ulen] = [Number(tail.readBigUInt64LE(8)), Number(tail.readBigUInt64LE(16))];
    const body = z.blob.subarray(0, z.blob.length - 48);
    const badType = zstdFooterFrame(z.tocOffset, clen, ulen);
    badType.writeBigUInt64LE(2n, 8 + 24);
    await expectCode(open(Buffer.concat([body, badType]), z.tocDigest, {}, true), 'FOOTER_INVALID');
    await expectCode(open(Buffer.concat([body, zstdFooterFrame(z.blob.length + 5, clen, ulen)]), z.tocDigest, {}, true), 'TOC_OUT_OF_RANGE');
    await expectCode(open(Buffer.concat([body, zstdFooterFrame(z.tocOffset, clen + 100, ulen)]), z.tocDigest, {}, true), 'TOC_OUT_OF_RANGE');
    await expectCode(open(Buffer.concat([body, zstdFooterFrame(z.tocOffset + 1, clen - 1, ulen)]), z.tocDigest, {}, true), 'TOC_OUT_OF_RANGE');
    await expectCode(open(Buffer.concat([body, zstdFooterFrame(4, clen, ulen)]), z.tocDigest, {}, true), 'TOC_OUT_OF_RANGE');
    await expectCode(open(Buffer.concat([body, zstdFooterFrame(z.tocOffset, clen, ulen + 10)]), z.tocDigest, {}, true), 'DECOMPRESS_FAILED');
  });

  it('TOC over the size limit (compressed member, JSON size in the tar header, zstd lengths)', async () => {
    const fx = buildEStargz(sampleEntries());
    const small = { ...DEFAULT_LIMITS, maxTocBytes: 200 };
    await expectCode(open(fx.blob, fx.tocDigest, { limits: small }), 'TOC_TOO_LARGE');
    // Small compressed member, JSON over the limit: refused from the tar header, before inflating it.
    const mid = { ...DEFAULT_LIMITS, maxTocBytes: fx.blob.length - fx.tocOffset };
    expect(fx.tocJson.length).toBeGreaterThan(mid.maxTocBytes);
    await expectCode(open(fx.blob, fx.tocDigest, { limits: mid }), 'TOC_TOO_LARGE');
    const z = buildEStargz(sampleEntries(), { compression: 'zstd' });
    await expectCode(open(z.blob, z.tocDigest, { limits: small }, true), 'TOC_TOO_LARGE');
    await expectCode(open(fx.blob, fx.tocDigest, { limits: { ...DEFAULT_LIMITS, maxEntries: 5 } }), 'TOC_TOO_LARGE');
  });

  it('first TOC tar entry must be stargz.index.json', async () => {
    const fx = buildEStargz(sampleEntries());
    const t = tocTarEntry(fx.tocJson);
    t.write('other.json\0\0\0\0\0\0\0', 0, 'latin1');
    // fix the checksum so that only the name is wrong
    t.fill(0x20, 148, 156);
    let sum = 0;
    for (let i = 0; i < 512; i++) sum += t[i]!;
    t.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1');
    const blob = Buffer.concat([fx.blob.subarray(0, fx.tocOffset), gzipSync(t), estargzFooter(fx.tocOffset)]);
    await expectCode(open(blob, fx.tocDigest), 'TOC_MALFORMED');
    t[0] = 0x41; // now the checksum is wrong
    const blob2 = Buffer.concat([fx.blob.subarray(0, fx.tocOffset), gzipSync(t), estargzFooter(fx.tocOffset)]);
    await expectCode(open(blob2, fx.tocDigest), 'TAR_INVALID');
  });

  const TOC_EDITS: [string, (t: JTOC, base: EStargzFixture) => void, string, string?][] = [
    ['version 2', (t) => void (t.version = 2), 'TOC_MALFORMED'],
    ['entries not an array', (t) => void ((t as unknown as Record<string, unknown>)['entries'] = {}), 'TOC_MALFORMED'],
    ['unknown entry type', (t) => void (find(t, './dev/fifo')['type'] = 'socket'), 'ENTRY_INVALID', './dev/fifo'],
    ['size as a string', (t) => void (find(t, './etc/passwd')['size'] = '30'), 'ENTRY_INVALID', './etc/passwd'],
    ['negative uid', (t) => void (find(t, './etc/passwd')['uid'] = -1), 'ENTRY_INVALID', './etc/passwd'],
    ['fractional mode', (t) => void (find(t, './etc/passwd')['mode'] = 420.5), 'ENTRY_INVALID', './etc/passwd'],
    ['modtime not RFC 3339', (t) => void (find(t, './etc/')['modtime'] = '2024-02-30T00:00:00Z'), 'ENTRY_INVALID', './etc/'],
    ['xattr not base64', (t) => void (find(t, './etc/xattr')['xattrs'] = { 'user.a': 'no*base64' }), 'ENTRY_INVALID', './etc/xattr'],
    ['malformed digest', (t) => void (find(t, './etc/passwd')['chunkDigest'] = 'sha256:1234'), 'ENTRY_INVALID', './etc/passwd'],
    ['absolute path', (t) => void (find(t, './etc/passwd')['name'] = '/etc/passwd'), 'ENTRY_PATH_UNSAFE', '/etc/passwd'],
    ['".." path', (t) => void (find(t, './etc/passwd')['name'] = 'etc/../../passwd'), 'ENTRY_PATH_UNSAFE', 'etc/../../passwd'],
    ['NUL in path', (t) => void (find(t, './etc/passwd')['name'] = 'etc/pa\0sswd'), 'ENTRY_PATH_UNSAFE'],
    ['hardlink escaping the root', (t) => void (find(t, './etc/hard')['linkName'] = '../../etc/shadow'), 'ENTRY_PATH_UNSAFE'],
    ['duplicate path', (t) => void t.entries.push({ ...find(t, './dev/fifo') }), 'ENTRY_DUPLICATE', './dev/fifo'],
    ['missing chunkDigest', (t) => void delete find(t, './etc/setuid')['chunkDigest'], 'CHUNK_INVALID', './etc/setuid'],
    ['chunk entry without a file', (t) => void t.entries.splice(2, 0, { type: 'chunk', offset: 10, chunkOffset: 0 }), 'ENTRY_INVALID'],
    ['chunk after an empty file', (t) => void t.entries.splice(t.entries.indexOf(find(t, './etc/empty')) + 1, 0, { type: 'chunk', offset: 10, chunkOffset: 0, chunkDigest: sha256(Buffer.from('a')) }), 'CHUNK_INVALID', './etc/empty'],
    ['offset past the payload area', (t) => void (find(t, './etc/passwd')['offset'] = 1e12), 'CHUNK_INVALID', './etc/passwd'],
    ['offset at the TOC member', (t, base) => void (find(t, './etc/passwd')['offset'] = base.tocOffset), 'CHUNK_INVALID', './etc/passwd'],
    ['two chunks at the same offset', (t) => void (find(t, './etc/setuid')['offset'] = find(t, './etc/passwd')['offset']), 'CHUNK_INVALID'],
    ['last chunk size contradicts the file size', (t) => void (find(t, './etc/passwd')['chunkSize'] = 3), 'CHUNK_INVALID', './etc/passwd'],
  ];
  for (const [label, edit, code, entry] of TOC_EDITS) {
    it(`TOC with ${label}: ${code}`, async () => {
      const fx = edited(edit);
      await expectCode(open(fx.blob, fx.tocDigest), code, entry);
    });
  }

  it('chunk gaps in a chunked file are rejected', async () => {
    const entries: TarEntry[] = [{ name: 'big', type: 'reg', data: prand(40_000, 'gap') }];
    const fx = edited((t) => void (t.entries.filter((e) => e['name'] === 'big')[2]!['chunkOffset'] = 20_000), entries, { chunkSize: 16384 });
    await expectCode(open(fx.blob, fx.tocDigest), 'CHUNK_INVALID', 'big');
  });
});

describe('eStargz readers: content is verified or refused', () => {
  it('a TOC lying about a chunk digest: CHUNK_DIGEST_MISMATCH on read, never the bytes', async () => {
    const fx = edited((t) => void (find(t, './etc/passwd')['chunkDigest'] = sha256(Buffer.from('lie'))));
    const { index } = await open(fx.blob, fx.tocDigest);
    const e = await failure(readAll(index, fx.blob));
    expect(e.code).toBe('CHUNK_DIGEST_MISMATCH');
    expect(['etc/passwd', 'etc/hard']).toContain(e.context.entry);
    expect(e.context.chunk).toBe(sha256(Buffer.from('lie')));
  });

  it('a TOC lying about a file size: verified bytes or an error', async () => {
    const fx = edited((t) => {
      const p = find(t, './etc/passwd');
      p['size'] = 31;
    });
    const { index } = await open(fx.blob, fx.tocDigest);
    const e = await failure(readAll(index, fx.blob));
    expect(['CHUNK_DIGEST_MISMATCH', 'DECOMPRESS_FAILED']).toContain(e.code);
  });

  for (const compression of ['gzip', 'zstd'] as const) {
    it(`${compression}: a flipped byte inside any member's compressed data never yields wrong bytes`, async () => {
      const entries = sampleEntries();
      const fx = buildEStargz(entries, { compression });
      const expected = await readAll((await open(fx.blob, fx.tocDigest, {}, compression === 'zstd')).index, fx.blob);
      expect(expected.get('etc/hard')!.toString()).toBe('root:x:0:0:root:/root:/bin/sh\n');
      const good = await open(fx.blob, fx.tocDigest, {}, compression === 'zstd');
      // Members that begin with ≥ 2 KB of incompressible file data: their middle byte is file data.
      const starts = new Set([...good.index.walk()].flatMap(([, n]) => n.chunks.filter((c) => c.size >= 2048 && c.span.innerOffset === 0).map((c) => c.span.offset)));
      let checked = 0;
      for (const m of fx.memberOffsets) {
        const end = fx.memberOffsets.find((o) => o > m) ?? fx.tocOffset;
        const bad = Buffer.from(fx.blob);
        bad[m + Math.floor((end - m) / 2)]! ^= 0x5a;
        const { index } = await open(bad, fx.tocDigest, {}, compression === 'zstd');
        let failures = 0;
        for (const [path, node] of index.walk()) {
          if (node.type !== 'reg' || node.size === 0) continue;
          try {
            const parts = await readVerifiedChunks(new BufferBlob(bad, BLOB), { compression, blobName: BLOB }, node.chunks.map((chunk) => ({ chunk, entry: path })));
            expect(Buffer.concat(parts).equals(expected.get(path)!), path).toBe(true);
          } catch (e) {
            expect(e).toBeInstanceOf(LazyAlsError);
            expect(['CHUNK_DIGEST_MISMATCH', 'DECOMPRESS_FAILED']).toContain((e as LazyAlsError).code);
            failures++;
          }
        }
        // A flip elsewhere may hit only tar headers (zstd frames carry no checksum here, and gzip's CRC
        // is past the bytes we need), which no file read decodes: then every file must still be exact.
        if (starts.has(m)) expect(failures, `member at ${m}`).toBeGreaterThan(0);
        checked += starts.has(m) ? 1 : 0;
      }
      expect(checked).toBeGreaterThanOrEqual(2);
    });
  }

  it('decompression bomb in a chunk span: only the needed bytes are inflated', async () => {
    // A file of 4096 zero bytes whose member is followed (same span) by 1 GiB of gzip'ed zeros.
    const want = Buffer.alloc(4096);
    const head = gzipSync(tarHeaders({ name: 'z', type: 'reg', data: want }));
    const mib = gzipSync(Buffer.alloc(1024 * 1024));
    const bomb = Buffer.concat([gzipSync(want), ...Array.from({ length: 1024 }, () => mib)]);
    const toc = marshalIndent({ version: 1, entries: [{ name: 'z', type: 'reg', size: 4096, offset: head.length, digest: sha256(want), chunkDigest: sha256(want) }] });
    const tocOffset = head.length + bomb.length;
    const blob = Buffer.concat([head, bomb, gzipSync(tocTarEntry(toc)), estargzFooter(tocOffset)]);
    const { index } = await open(blob, sha256(toc));
    const before = process.memoryUsage().arrayBuffers;
    const got = await readAll(index, blob);
    const grown = process.memoryUsage().arrayBuffers - before;
    expect(got.get('z')!.equals(want)).toBe(true);
    expect(grown).toBeLessThan(64 * 1024 * 1024);
  });

  it('zstd TOC bomb: the TOC frame is inflated only to the declared length', async () => {
    const fx = buildEStargz(sampleEntries(), { compression: 'zstd' });
    const payloadEnd = fx.tocOffset - 8;
    const big = zstdCompress(Buffer.concat([fx.tocJson, Buffer.alloc(64 * 1024 * 1024, 0x20)]));
    const blob = Buffer.concat([fx.blob.subarray(0, payloadEnd), skippableFrame(big), zstdFooterFrame(fx.tocOffset, big.length, fx.tocJson.length)]);
    const before = process.memoryUsage().arrayBuffers;
    const { index } = await open(blob, fx.tocDigest, {}, true);
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(32 * 1024 * 1024);
    expect(index.lookup(asByteString('etc/passwd'))).toBeDefined();
  });
});
