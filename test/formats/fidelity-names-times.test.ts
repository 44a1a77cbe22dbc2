/**
 * Fidelity rules of issue 8 that hold in the layer model (formats): names are bytes, limits apply
 * to the name that lands on disk, times as containers/storage unpacks them. Blobs come from the
 * project's own writers and from Python's tarfile (a second, independent tar writer).
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BufferBlob } from '../../src/core/blob.js';
import { sha256Of } from '../../src/core/digest.js';
import { byteStringFromText as B, byteStringOf, goJsonMangle, toText } from '../../src/formats/byte-string.js';
import { openPlainLayer } from '../../src/formats/tar/index.js';
import { loadEStargzRecord, openEStargz, TOC_DIGEST_ANNOTATION } from '../../src/formats/estargz/index.js';
import { verifyFullPass } from '../../src/formats/full-pass.js';
import { loadZstdChunkedRecord, openZstdChunked } from '../../src/formats/zstd-chunked/index.js';
import type { LayerIndex } from '../../src/formats/model.js';
import { DiffTree } from '../../src/fuse/diff-tree.js';
import { createLogger } from '../../src/core/log.js';
import { buildTar, type TarEntry } from '../helpers/writers/tar.js';
import { buildEStargz } from '../helpers/writers/estargz.js';
import { buildZstdChunked, zstdChunkedSampleEntries, type ZstdChunkedEntry } from '../helpers/writers/zstd-chunked.js';

const work = mkdtempSync(join(tmpdir(), 'fidelity-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** 'f\xff.txt': not UTF-8 (a lone 0xff). */
const BAD = Buffer.from([0x66, 0xff, 0x2e, 0x74, 0x78, 0x74]);
/** A symlink target with a truncated 3-byte sequence (Go and WHATWG decoders would differ on it). */
const BAD_TARGET = Buffer.from([0x2e, 0x2e, 0x2f, 0xe2, 0x82, 0x41]);

async function plain(entries: TarEntry[]): Promise<LayerIndex> {
  const tar = buildTar(entries);
  return (await openPlainLayer(new BufferBlob(tar, 't.tar'), { descriptor: { digest: sha256Of(tar), size: tar.length } })).index;
}

function zstdOptions(w: ReturnType<typeof buildZstdChunked>): { descriptor: { annotations: Record<string, string> } } {
  return { descriptor: { annotations: w.annotations } };
}

describe('names are bytes', () => {
  it('byte-string helpers: lossless round trip, Go JSON mangling per invalid byte', () => {
    const all = Buffer.from(Array.from({ length: 255 }, (_, i) => i + 1));
    expect(Buffer.from(byteStringOf(all), 'latin1').equals(all)).toBe(true);
    expect(B('ü')).toBe('\xc3\xbc');
    expect(toText(B('日本'))).toBe('日本');
    // Go's encoder replaces each invalid byte with U+FFFD; 0xe2 0x82 is two invalid bytes there.
    expect(goJsonMangle(byteStringOf(BAD_TARGET))).toBe(B('../\ufffd\ufffdA'));
    expect(goJsonMangle(byteStringOf(BAD))).toBe(B('f\ufffd.txt'));
  });

  it('a PAX path / linkpath that is not UTF-8 (as Go archive/tar writes it) is served with its exact bytes', async () => {
    const ix = await plain([
      { name: 'bad', rawName: BAD, type: 'reg', data: Buffer.from('x') },
      { name: 'sym', type: 'symlink', rawLinkName: BAD_TARGET },
      { name: 'hard', type: 'hardlink', rawLinkName: BAD },
    ]);
    const n = ix.lookup(byteStringOf(BAD));
    expect(n?.type).toBe('reg');
    expect(ix.lookup(B('hard'))?.ino).toBe(n?.ino);
    const s = ix.lookup(B('sym'))!;
    expect(s.linkTarget).toBe(byteStringOf(BAD_TARGET));
    expect(s.size).toBe(BAD_TARGET.length);
    expect(ix.readdir(ix.root).map(([k]) => k)).toContain(byteStringOf(BAD));
  });

  it('Python tarfile (PAX hdrcharset=BINARY and GNU formats) names with invalid UTF-8 are served as bytes', async () => {
    for (const fmt of ['PAX_FORMAT', 'GNU_FORMAT']) {
      const out = join(work, `py-${fmt}.tar`);
      execFileSync('python3', ['-c', `
import tarfile, io, sys
with tarfile.open(sys.argv[1], 'w', format=getattr(tarfile, sys.argv[2]), encoding='utf-8', errors='surrogateescape') as t:
    name = b'dir/\\xff\\xfe-\\xe9t\\xe9.txt'.decode('utf-8', 'surrogateescape')
    d = tarfile.TarInfo('dir'); d.type = tarfile.DIRTYPE; d.mode = 0o755; t.addfile(d)
    i = tarfile.TarInfo(name); i.size = 3; t.addfile(i, io.BytesIO(b'abc'))
    l = tarfile.TarInfo('dir/link'); l.type = tarfile.SYMTYPE; l.linkname = b'\\xff'.decode('utf-8', 'surrogateescape'); t.addfile(l)
`, out, fmt]);
      const tar = readFileSync(out);
      const { index } = await openPlainLayer(new BufferBlob(tar, out), {});
      const name = byteStringOf(Buffer.from('dir/\xff\xfe-\xe9t\xe9.txt', 'latin1'));
      expect(index.lookup(name)?.size, fmt).toBe(3);
      expect(index.lookup(B('dir/link'))?.linkTarget, fmt).toBe('\xff');
    }
  });

  it('zstd:chunked: a TOC name mangled by Go JSON (U+FFFD) is served with the tar-split bytes, also from the record', async () => {
    const entries: ZstdChunkedEntry[] = [
      { name: 'd/', type: 'dir' },
      { name: 'bad', rawName: Buffer.concat([Buffer.from('d/'), BAD]), type: 'reg', data: Buffer.from('content'), mtime: 5 },
      { name: 'ok', type: 'reg', data: Buffer.from('ok') },
    ];
    const w = buildZstdChunked(entries);
    expect(w.manifestJson).toContain('\ufffd'); // the TOC really carries the mangled name
    const { index, record } = await openZstdChunked(new BufferBlob(w.blob), zstdOptions(w));
    const real = byteStringOf(Buffer.concat([Buffer.from('d/'), BAD]));
    expect(index.lookup(real)?.size).toBe(7);
    expect(index.lookup(B('d/f\ufffd.txt'))).toBeUndefined();
    const again = loadZstdChunkedRecord(JSON.parse(JSON.stringify(record)) as typeof record);
    expect(again.lookup(real)?.size).toBe(7);
  });
});

describe('limits apply to the name that lands on disk', () => {
  it('zstd:chunked: a 255-byte non-UTF-8 name (765 bytes once Go mangles it in the TOC) and its whiteout are served', async () => {
    const e9 = Buffer.alloc(255, 0xe9);
    const w = buildZstdChunked([
      { name: 'names/', type: 'dir' },
      { name: 'n', rawName: Buffer.concat([Buffer.from('names/'), e9]), type: 'reg', data: Buffer.from('x') },
      { name: 'w', rawName: Buffer.concat([Buffer.from('wh/.wh.'), e9]), type: 'reg' },
    ]);
    const { index } = await openZstdChunked(new BufferBlob(w.blob), zstdOptions(w));
    expect(index.lookup(byteStringOf(Buffer.concat([Buffer.from('names/'), e9])))?.size).toBe(1);
    expect(index.lookup(byteStringOf(Buffer.concat([Buffer.from('wh/'), e9])))?.type).toBe('char');
  });

  const n255 = 'a'.repeat(255);
  it('a whiteout ".wh." + 255 bytes is legal (plain tar and zstd:chunked); 256 bytes is not', async () => {
    const ix = await plain([{ name: `d/.wh.${n255}`, type: 'reg' }, { name: `d/${'b'.repeat(255)}`, type: 'reg' }]);
    expect(ix.lookup(B(`d/${n255}`))).toMatchObject({ type: 'char', rdevMajor: 0, rdevMinor: 0 });
    expect(ix.lookup(B(`d/${'b'.repeat(255)}`))?.type).toBe('reg');
    const w = buildZstdChunked([{ name: `.wh.${n255}`, type: 'reg' }]);
    const { index } = await openZstdChunked(new BufferBlob(w.blob), zstdOptions(w));
    expect(index.lookup(B(n255))?.type).toBe('char');
    await expect(plain([{ name: `.wh.${'a'.repeat(256)}`, type: 'reg' }])).rejects.toThrow(/longer than 255 bytes/);
    await expect(plain([{ name: 'c'.repeat(256), type: 'reg' }])).rejects.toThrow(/longer than 255 bytes/);
  });

  it('a 255-byte name of multibyte characters is legal; one byte more is not', async () => {
    const name = 'é'.repeat(127) + 'x'; // 255 bytes
    const ix = await plain([{ name, type: 'reg' }]);
    expect(ix.lookup(B(name))?.type).toBe('reg');
    await expect(plain([{ name: 'é'.repeat(128), type: 'reg' }])).rejects.toThrow(/longer than 255 bytes/);
  });
});

describe('times as containers/storage unpacks them', () => {
  it('before 1970 → 0; 2^31, year 2100 and PAX nanoseconds exact; FUSE stat never wraps', async () => {
    const ix = await plain([
      { name: 'pre', type: 'reg', paxMtime: '-86400' },
      { name: 'pre-frac', type: 'reg', paxMtime: '-1.5' },
      { name: 'zero', type: 'reg', mtime: 0 },
      { name: 'y2038', type: 'reg', mtime: 2 ** 31 },
      { name: 'y2100', type: 'reg', mtime: 4102444800 },
      { name: 'nano', type: 'reg', paxMtime: '1700000000.123456789' },
      { name: '.wh.old', type: 'reg', paxMtime: '-5' },
    ]);
    const t = (p: string): [number, number] => [ix.lookup(B(p))!.mtimeSec, ix.lookup(B(p))!.mtimeNsec];
    expect(t('pre')).toEqual([0, 0]);
    expect(t('pre-frac')).toEqual([0, 0]);
    expect(t('zero')).toEqual([0, 0]);
    expect(t('y2038')).toEqual([2 ** 31, 0]);
    expect(t('y2100')).toEqual([4102444800, 0]);
    expect(t('nano')).toEqual([1700000000, 123456789]);
    expect(t('old')).toEqual([0, 0]); // the whiteout device too
    const tree = new DiffTree({ key: 'sha256:' + '0'.repeat(64), keyKind: 'blob', index: ix, info: Buffer.alloc(0), blobSize: 0 } as never, 100, createLogger('silent'));
    expect(tree.stat(ix.lookup(B('pre'))!).mtime).toBe(0);
    expect(tree.stat(ix.lookup(B('y2100'))!).mtime).toBe(4102444800_000);
    expect(tree.stat(ix.lookup(B('nano'))!).mtime).toBe(1700000000_123);
  });

  it('zstd:chunked: RFC 3339 fractions kept, pre-epoch TOC time served as 0', async () => {
    const w = buildZstdChunked([
      { name: 'a', type: 'reg', mtime: 1_700_000_000, mtimeNsec: 987_654_321, data: Buffer.from('a') },
      { name: 'b', type: 'reg', mtime: 4102444800, data: Buffer.from('b') },
    ]);
    const { index } = await openZstdChunked(new BufferBlob(w.blob), zstdOptions(w));
    expect([index.lookup(B('a'))!.mtimeSec, index.lookup(B('a'))!.mtimeNsec]).toEqual([1_700_000_000, 987_654_321]);
    expect(index.lookup(B('b'))!.mtimeSec).toBe(4102444800);
  });
});

describe('the TOC is bound to the tar it indexes (zstd:chunked, at resolve time)', () => {
  type E = Record<string, unknown>;
  const edits: [string, (entries: E[]) => void][] = [
    ['name', (es) => es.filter((e) => e['name'] === 'bin/tool').forEach((e) => (e['name'] = 'bin/tooo'))],
    ['mode', (es) => (es.find((e) => e['name'] === 'bin/tool')!['mode'] = 0o755)],
    ['uid', (es) => (es.find((e) => e['name'] === 'bin/tool')!['uid'] = 0)],
    ['gid', (es) => (es.find((e) => e['name'] === 'run/fifo')!['gid'] = 0)],
    ['mtime', (es) => (es.find((e) => e['name'] === 'bin/link')!['modtime'] = '2001-01-01T00:00:00Z')],
    ['mtime nanoseconds', (es) => (es.find((e) => e['name'] === 'bin/tool')!['modtime'] = '2023-11-14T22:13:20.123456788Z')],
    ['xattr value', (es) => ((es.find((e) => e['name'] === 'bin/tool')!['xattrs'] as E)['user.comment'] = Buffer.from('bye').toString('base64'))],
    ['xattr added', (es) => (es.find((e) => e['name'] === 'opq/kept')!['xattrs'] = { 'security.capability': 'AQAAAg==' })],
    ['symlink target', (es) => (es.find((e) => e['name'] === 'bin/link')!['linkName'] = '/etc/shadow')],
    ['hardlink target', (es) => (es.find((e) => e['name'] === 'bin/hard')!['linkName'] = 'opq/kept')],
    ['type', (es) => (es.find((e) => e['name'] === 'run/fifo')!['type'] = 'char')],
    ['device numbers', (es) => (es.find((e) => e['name'] === 'dev/null')!['devMinor'] = 5)],
  ];
  for (const [what, edit] of edits) {
    it(`a TOC that lies about the ${what} is refused (FORMAT_CONFLICT)`, async () => {
      const w = buildZstdChunked(zstdChunkedSampleEntries(), { mutateToc: (toc) => edit(toc.entries as E[]) });
      await expect(openZstdChunked(new BufferBlob(w.blob), zstdOptions(w))).rejects.toMatchObject({ code: 'FORMAT_CONFLICT' });
    });
  }

  it('the untouched TOC of the same entries opens (the check is not too strict)', async () => {
    const w = buildZstdChunked(zstdChunkedSampleEntries(), { chunkSize: 20_000, holes: true, zoneOffsetMinutes: 90 });
    const { index } = await openZstdChunked(new BufferBlob(w.blob), zstdOptions(w));
    expect(index.lookup(B('bin/tool'))?.mode).toBe(0o4755);
  });
});

describe('eStargz: names a Go TOC writer mangled are served with the inline tar headers’ bytes', () => {
  const e9 = Buffer.alloc(255, 0xe9);
  /** An entry whose tar header holds `raw` and whose TOC holds Go's U+FFFD mangling of it. */
  const mangled = (raw: Buffer, e: Omit<TarEntry, 'name' | 'rawName'>): TarEntry => ({ ...e, name: toText(goJsonMangle(byteStringOf(raw))), rawName: raw });
  const cat = (...p: (string | Buffer)[]): Buffer => Buffer.concat(p.map((x) => (typeof x === 'string' ? Buffer.from(x) : x)));
  const entries = (): TarEntry[] => [
    { name: 'd/', type: 'dir' },
    { name: 'd/plain', type: 'reg', data: Buffer.from('plain\n') },
    mangled(cat('d/', e9), { type: 'reg', data: Buffer.from('255 bytes of 0xe9\n') }), // TOC name: 765 bytes
    mangled(cat('d/.wh.', BAD), { type: 'reg' }), // no payload: header between two payloads
    mangled(cat('d/.wh.', e9), { type: 'reg' }),
    { name: 'd/sym', type: 'symlink', linkName: toText(goJsonMangle(byteStringOf(BAD_TARGET))), rawLinkName: BAD_TARGET },
    mangled(cat('d/empty-', BAD), { type: 'reg' }),
    { name: 'd/after', type: 'reg', data: Buffer.from('after\n'), paxMtime: '1700000000.123456789', mtime: 1700000000 },
  ];
  const open = async (w: ReturnType<typeof buildEStargz>, blob: BufferBlob = new BufferBlob(w.blob, 'e')): Promise<Awaited<ReturnType<typeof openEStargz>>> =>
    openEStargz(blob, { descriptor: { annotations: { [TOC_DIGEST_ANNOTATION]: w.tocDigest } } });

  it('a 255-byte non-UTF-8 name (765 bytes in the TOC), whiteouts of such names, a symlink target — also from the record', async () => {
    const w = buildEStargz(entries());
    expect(w.tocJson.toString()).toContain('\ufffd');
    const { index, record } = await open(w);
    for (const ix of [index, loadEStargzRecord(JSON.parse(JSON.stringify(record)) as typeof record)]) {
      expect(ix.lookup(byteStringOf(cat('d/', e9)))?.size).toBe(18);
      expect(ix.lookup(byteStringOf(cat('d/', BAD)))).toMatchObject({ type: 'char', rdevMajor: 0, rdevMinor: 0 });
      expect(ix.lookup(byteStringOf(cat('d/empty-', BAD)))?.type).toBe('reg');
      expect(ix.lookup(B('d/sym'))?.linkTarget).toBe(byteStringOf(BAD_TARGET));
      expect([...ix.walk()].some(([p]) => p.includes('\xef\xbf\xbd'))).toBe(false); // no mangled name left
      // the TOC drops the fraction (RFC 3339 seconds): the store serves what its TOC says
      expect([ix.lookup(B('d/after'))!.mtimeSec, ix.lookup(B('d/after'))!.mtimeNsec]).toEqual([1700000000, 0]);
    }
    // the whole-layer check agrees with the names served (and accepts the TOC's whole seconds)
    await expect(verifyFullPass(new BufferBlob(w.blob, 'e'), index, { diffId: w.diffId })).resolves.toMatchObject({ diffId: w.diffId });
  });

  it('costs nothing for a layer without a mangled name: only the tail is read', async () => {
    const w = buildEStargz(entries().filter((e) => e.rawName === undefined && e.rawLinkName === undefined));
    const reads: number[] = [];
    const blob = new BufferBlob(w.blob, 'e');
    const counting = {
      size: blob.size,
      name: blob.name,
      read: (o: number, n: number) => {
        reads.push(o);
        return blob.read(o, n);
      },
    };
    await openEStargz(counting, { descriptor: { annotations: { [TOC_DIGEST_ANNOTATION]: w.tocDigest } } });
    expect(reads).toEqual([Math.max(0, w.blob.length - 512 * 1024)]);
  });

  type E = Record<string, unknown>;
  const lies: [string, (es: E[]) => void][] = [
    ['the mode', (es) => (es.find((e) => String(e['name']).startsWith('d/empty-'))!['mode'] = 0o755)],
    ['the uid', (es) => (es.find((e) => String(e['name']).startsWith('d/empty-'))!['uid'] = 7)],
    ['the mtime', (es) => (es.find((e) => e['name'] === 'd/after')!['modtime'] = '2001-01-01T00:00:00Z')],
    ['the size', (es) => (es.find((e) => e['name'] === 'd/sym')!['type'] = 'reg')],
    ['a name that is not the mangling of the header’s', (es) => (es.find((e) => String(e['name']).startsWith('d/empty-'))!['name'] = 'd/other-\ufffd')],
  ];
  for (const [what, edit] of lies) {
    it(`a gap whose TOC entry lies about ${what} is refused (FORMAT_CONFLICT)`, async () => {
      const w = buildEStargz(entries(), { editToc: (toc) => edit(toc.entries as E[]) });
      await expect(open(w)).rejects.toMatchObject({ code: 'FORMAT_CONFLICT' });
    });
  }

  it('a record cannot rename an entry the TOC did not mangle', async () => {
    const w = buildEStargz(entries());
    const { record } = await open(w);
    const forged = { ...record, headerNames: [[1, Buffer.from('d/evil').toString('base64')]] as const };
    expect(() => loadEStargzRecord(forged)).toThrow(/header names/);
  });
});
