import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { DEFAULT_LIMITS } from '../../src/core/limits.js';
import { FormatError } from '../../src/formats/errors.js';
import { TarScanner, type ScannedEntry } from '../../src/formats/tar/tar-scanner.js';
import { parseTarHeader } from '../../src/formats/tar/tar-header.js';
import { buildTar, padTo512, tarHeaderBlock, TAR_EOF } from '../helpers/writers/tar.js';
import { byteStringFromText as B } from '../../src/formats/byte-string.js';

interface Scanned {
  entry: ScannedEntry;
  data: Buffer;
}

/** Scan `tar` pushed in pieces of `step` bytes; returns entries with their content and whether EOF blocks were seen. */
export function scan(tar: Buffer, step = tar.length || 1, limits = DEFAULT_LIMITS): { entries: Scanned[]; ended: boolean } {
  const s = new TarScanner(limits);
  const entries: Scanned[] = [];
  let ended = false;
  for (let i = 0; i < tar.length; i += step) {
    for (const ev of s.push(tar.subarray(i, i + step))) {
      if (ev.kind === 'entry') entries.push({ entry: ev.entry, data: Buffer.alloc(0) });
      else if (ev.kind === 'data') entries[entries.length - 1]!.data = Buffer.concat([entries[entries.length - 1]!.data, ev.data]);
      else ended = true;
    }
  }
  s.finish();
  return { entries, ended };
}

function code(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(FormatError);
    return (e as FormatError).code + ': ' + (e as FormatError).message;
  }
  return 'no error';
}

/** Recompute a header block's checksum after editing it. */
function fixChecksum(h: Buffer): Buffer {
  h.fill(0x20, 148, 156);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1');
  return h;
}

/** A raw extension header + payload ('x', 'g', 'L', 'K'). */
function ext(type: string, payload: Buffer): Buffer {
  return Buffer.concat([tarHeaderBlock({ name: '././@LongLink', typeflag: type, mode: 0, uid: 0, gid: 0, size: payload.length, mtime: 0 }), padTo512(payload)]);
}

function pax(records: Record<string, string | Buffer>): Buffer {
  const parts = Object.entries(records).map(([k, v]) => {
    const body = Buffer.concat([Buffer.from(` ${k}=`), Buffer.from(v), Buffer.from('\n')]);
    let len = body.length + 1;
    while (String(len).length + body.length !== len) len = String(len).length + body.length;
    return Buffer.concat([Buffer.from(String(len)), body]);
  });
  return Buffer.concat(parts);
}

const hdr = (name: string, typeflag = '0', size = 0, extra: Partial<Parameters<typeof tarHeaderBlock>[0]> = {}): Buffer =>
  tarHeaderBlock({ name, typeflag, mode: 0o644, uid: 0, gid: 0, size, mtime: 1, ...extra });

describe('TarScanner', () => {
  it('parses every entry type the writer produces, the same for any push size', () => {
    const big = Buffer.alloc(5000, 9);
    const tar = buildTar([
      { name: './', type: 'dir', mode: 0o755, mtime: 10 },
      { name: 'a/f', type: 'reg', data: big, mode: 0o100640, uid: 5, gid: 6, mtime: 11, xattrs: { 'user.x': Buffer.from([0, 255]), 'security.capability': 'cap' } },
      { name: 'a/l', type: 'symlink', linkName: '../' + 'y'.repeat(200) },
      { name: 'a/h', type: 'hardlink', linkName: 'a/f' },
      { name: 'c', type: 'char', devMajor: 4, devMinor: 64 },
      { name: 'b', type: 'block', devMajor: 8, devMinor: 1 },
      { name: 'p', type: 'fifo' },
      { name: 'deep/' + 'n'.repeat(150) + '/ü', type: 'reg', data: Buffer.from('x'), uid: 5_000_000, gid: 6_000_000 },
    ]);
    const ref = scan(tar);
    expect(ref.ended).toBe(true);
    for (const step of [1, 7, 511, 512, 513, 4096]) {
      const s = scan(tar, step);
      expect(s.entries.map((e) => [e.entry, e.data])).toEqual(ref.entries.map((e) => [e.entry, e.data]));
    }
    const [root, f, l, h, c, b, p, deep] = ref.entries;
    expect(root!.entry).toMatchObject({ name: './', type: 'dir', mode: 0o755, mtimeSec: 10 });
    expect(f!.entry).toMatchObject({ name: 'a/f', type: 'reg', size: 5000, mode: 0o100640, uid: 5, gid: 6 });
    expect(f!.data.equals(big)).toBe(true);
    expect(f!.entry.xattrs.get('user.x')).toEqual(Buffer.from([0, 255]));
    expect(f!.entry.xattrs.get('security.capability')?.toString()).toBe('cap');
    expect(tar.subarray(f!.entry.dataOffset, f!.entry.dataOffset + 5000).equals(big)).toBe(true);
    expect(l!.entry).toMatchObject({ type: 'symlink', linkName: '../' + 'y'.repeat(200), size: 0 });
    expect(h!.entry).toMatchObject({ type: 'hardlink', linkName: 'a/f' });
    expect(c!.entry).toMatchObject({ type: 'char', devMajor: 4, devMinor: 64 });
    expect(b!.entry).toMatchObject({ type: 'block', devMajor: 8, devMinor: 1 });
    expect(p!.entry.type).toBe('fifo');
    expect(deep!.entry).toMatchObject({ name: B('deep/' + 'n'.repeat(150) + '/ü'), uid: 5_000_000, gid: 6_000_000 });
  });

  it('GNU base-256 numbers, octal with spaces, typeflag 7 and \\0, ustar prefix', () => {
    const h = hdr('big', '0', 0);
    // size = 2^33 + 5 in base-256 (too big for 11 octal digits) — but keep the stream short by
    // using it on a header-only type instead: a directory ignores its size.
    h[156] = '5'.charCodeAt(0);
    h.fill(0, 124, 136);
    h[124] = 0x80;
    h.writeUIntBE(2 ** 33 + 5, 6, 6);
    Buffer.from([0x80, 0, 0, 0, 0, 0x98, 0x96, 0x80]).copy(h, 108); // uid 10_000_000
    Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe]).copy(h, 136); // mtime -2
    fixChecksum(h);
    const sp = hdr('spaced');
    sp.write('   644 \0', 100, 'latin1'); // leading spaces, space terminator
    fixChecksum(sp);
    const seven = hdr('contig', '7', 1);
    const nul = hdr('dir-by-slash/', '\0');
    const pre = hdr('name', '0');
    pre.write('some/prefix', 345, 'latin1');
    fixChecksum(pre);
    const tar = Buffer.concat([h, sp, seven, padTo512(Buffer.from('z')), nul, pre, TAR_EOF]);
    const e = scan(tar).entries.map((x) => x.entry);
    expect(e[0]).toMatchObject({ type: 'dir', size: 0, uid: 10_000_000, mtimeSec: -2 });
    expect(e[1]).toMatchObject({ mode: 0o644 });
    expect(e[2]).toMatchObject({ type: 'reg', size: 1 });
    expect(e[3]).toMatchObject({ type: 'dir', name: 'dir-by-slash/' });
    expect(e[4]).toMatchObject({ name: 'some/prefix/name' });
  });

  it('PAX: path, linkpath, size, uid, gid, fractional and negative mtime, empty value reverts, global ignored', () => {
    const tar = Buffer.concat([
      ext('g', pax({ comment: 'global stuff', path: 'ignored' })),
      ext('x', pax({ path: 'pax/name', uid: '4000000000', gid: '7', mtime: '1700000000.123456789123' })),
      hdr('short', '0', 3),
      padTo512(Buffer.from('abc')),
      ext('x', pax({ linkpath: 'target/of/link', mtime: '-1.25' })),
      hdr('l', '2'),
      ext('x', pax({ size: '2' })),
      hdr('s', '0', 0),
      padTo512(Buffer.from('hi')),
      ext('x', pax({ path: '' })),
      hdr('reverted', '0'),
      TAR_EOF,
    ]);
    const e = scan(tar, 100).entries;
    expect(e[0]!.entry).toMatchObject({ name: 'pax/name', uid: 4_000_000_000, gid: 7, mtimeSec: 1_700_000_000, mtimeNsec: 123_456_789 });
    expect(e[0]!.data.toString()).toBe('abc');
    expect(e[1]!.entry).toMatchObject({ type: 'symlink', linkName: 'target/of/link', mtimeSec: -2, mtimeNsec: 750_000_000 });
    expect(e[2]!.entry.size).toBe(2);
    expect(e[2]!.data.toString()).toBe('hi');
    expect(e[3]!.entry.name).toBe('reverted');
  });

  it('GNU L/K long names', () => {
    const long = 'L'.repeat(300) + '/file';
    const tar = Buffer.concat([ext('L', Buffer.from(long + '\0')), ext('K', Buffer.from('K'.repeat(250) + '\0')), hdr('trunc', '2', 0, { linkName: 'x' }), TAR_EOF]);
    expect(scan(tar).entries[0]!.entry).toMatchObject({ name: long, linkName: 'K'.repeat(250), type: 'symlink' });
  });

  it('end of archive: plain end at a header boundary, lone zero block at the end; refusals', () => {
    const one = buildTar([{ name: 'f', type: 'reg', data: Buffer.from('x') }], { eof: false });
    expect(scan(one)).toMatchObject({ ended: false, entries: [{ entry: { name: 'f' } }] });
    expect(scan(Buffer.concat([one, Buffer.alloc(512)])).entries).toHaveLength(1);
    expect(scan(Buffer.concat([one, TAR_EOF, Buffer.alloc(8192)])).ended).toBe(true); // GNU tar record padding
    expect(code(() => scan(Buffer.concat([one, TAR_EOF, Buffer.from([1])])))).toMatch(/^TAR_INVALID: non-zero data after/);
    expect(code(() => scan(Buffer.concat([one, Buffer.alloc(512), one])))).toMatch(/^TAR_INVALID: lone zero block/);
    expect(code(() => scan(one.subarray(0, 700)))).toMatch(/^TAR_INVALID: archive truncated/);
    expect(code(() => scan(one.subarray(0, 300)))).toMatch(/^TAR_INVALID: archive truncated/);
    expect(code(() => scan(ext('x', pax({ path: 'dangling' }))))).toMatch(/extension header with no entry/);
  });

  it('refuses bad checksums, magic, numbers, types, sparse, oversized extensions, bad PAX', () => {
    const h = hdr('f');
    h[0] = 'g'.charCodeAt(0);
    expect(code(() => scan(h))).toMatch(/^TAR_INVALID: header checksum mismatch/);
    const m = hdr('f');
    m.write('ustaR', 257, 'latin1');
    expect(code(() => scan(fixChecksum(m)))).toMatch(/bad magic/);
    const n = hdr('f');
    n.write('12345678', 124, 'latin1');
    expect(code(() => scan(fixChecksum(n)))).toMatch(/bad octal size/);
    const neg = hdr('f');
    neg.fill(0xff, 108, 116);
    expect(code(() => scan(fixChecksum(neg)))).toMatch(/negative uid/);
    const huge = hdr('f');
    huge.fill(0x7f, 124, 136);
    huge[124] = 0x80;
    expect(code(() => scan(fixChecksum(huge)))).toMatch(/size out of range/);
    const sparse = Buffer.concat([hdr('holes', 'S'), TAR_EOF]);
    expect(code(() => scan(sparse))).toMatch(/^TAR_INVALID: unsupported tar entry type 'S' \(GNU sparse\) \(entry "holes"\)/);
    expect(code(() => scan(Buffer.concat([hdr('v', 'V'), TAR_EOF])))).toMatch(/unsupported tar entry type "V"/);
    // GNU sparse maps must add up (Go's archive/tar: errMissData / errUnrefData), stay inside the
    // file and not overlap
    const sparse01 = (map: string, stored: number, size = '100'): Buffer =>
      Buffer.concat([ext('x', pax({ 'GNU.sparse.size': size, 'GNU.sparse.numblocks': String(Math.ceil(map.split(',').length / 2)), 'GNU.sparse.map': map })), hdr('s', '0', stored), padTo512(Buffer.alloc(stored, 1)), TAR_EOF]);
    expect(code(() => scan(sparse01('10,5', 5)))).toBe('no error');
    expect(code(() => scan(sparse01('10,6', 5)))).toMatch(/segments hold 6 bytes, the entry stores 5/);
    expect(code(() => scan(sparse01('10,5,12,5', 10)))).toMatch(/overlaps/);
    expect(code(() => scan(sparse01('98,5', 5)))).toMatch(/past the real size 100/);
    expect(code(() => scan(sparse01('1,2,3', 3)))).toMatch(/map of 3 numbers for 2 blocks/);
    const sparse10 = (map: string, stored: number): Buffer =>
      Buffer.concat([
        ext('x', pax({ 'GNU.sparse.major': '1', 'GNU.sparse.minor': '0', 'GNU.sparse.realsize': '100', 'GNU.sparse.name': 'real' })),
        hdr('./GNUSparseFile.0/real', '0', 512 + stored),
        padTo512(Buffer.from(map)),
        padTo512(Buffer.alloc(stored, 2)),
        TAR_EOF,
      ]);
    const ok = scan(sparse10('1\n50\n7\n', 7), 100);
    expect(ok.entries[0]!.entry).toMatchObject({ name: 'real', size: 100, sparse: [{ offset: 50, length: 7 }] });
    expect(ok.entries[0]!.data.length).toBe(7);
    expect(code(() => scan(sparse10('2\n50\n7\n', 7)))).toMatch(/map of 2 entries|GNU sparse 1.0 map/);
    expect(code(() => scan(sparse10('1\n50\nx\n', 7)))).toMatch(/is not a number/);
    const limits = { ...DEFAULT_LIMITS, maxTarHeaderExtBytes: 1000 };
    expect(code(() => scan(Buffer.concat([ext('L', Buffer.alloc(1001, 0x61)), hdr('s')]), 512, limits))).toMatch(/exceeds the limit/);
    expect(code(() => scan(Buffer.concat([ext('g', Buffer.alloc(1001, 0x61)), hdr('s')]), 512, limits))).toMatch(/exceeds the limit/);
    for (const bad of ['5 a=b\n', '99 path=x\n', '7 path\n', 'x path=y\n', '8 =value\n']) {
      expect(code(() => scan(Buffer.concat([ext('x', Buffer.from(bad)), hdr('s'), TAR_EOF])))).toMatch(/TAR_INVALID: malformed PAX/);
    }
    expect(code(() => scan(Buffer.concat([ext('x', pax({ uid: '-1' })), hdr('s'), TAR_EOF])))).toMatch(/bad PAX uid/);
    expect(code(() => scan(Buffer.concat([ext('x', pax({ mtime: '1e9' })), hdr('s'), TAR_EOF])))).toMatch(/bad PAX mtime/);
    expect(code(() => scan(Buffer.concat([hdr('sym', '2'), TAR_EOF])))).toMatch(/symlink without a target/);
    expect(code(() => scan(Buffer.concat([hdr('a'), hdr('b'), TAR_EOF]), 512, { ...DEFAULT_LIMITS, maxEntries: 1 }))).toMatch(/^TOC_TOO_LARGE/);
  });

  it('parseTarHeader accepts GNU magic and ignores the prefix field there', () => {
    const h = hdr('gnuname');
    h.write('ustar  \0', 257, 'latin1');
    h.write('atime-junk', 345, 'latin1');
    expect(parseTarHeader(fixChecksum(h), 0)).toMatchObject({ name: 'gnuname', gnu: true });
  });

  // GNU sparse as Go's archive/tar (c/storage's unpack) reads it: sparse iff GNU.sparse.major/minor
  // say 0.0/0.1/1.0 or (no version) a non-empty map; only then do GNU.sparse.name and .size apply.
  // Entries written by Python tarfile (an independent writer) with the PAX records set by hand.
  const pyTar = (script: string): Buffer =>
    execFileSync('python3', ['-c', `import tarfile, io, sys
b = io.BytesIO()
t = tarfile.open(fileobj=b, mode='w', format=tarfile.PAX_FORMAT)
def reg(name, data, pax):
    i = tarfile.TarInfo(name); i.size = len(data); i.pax_headers = pax; t.addfile(i, io.BytesIO(data))
${script}
t.close(); sys.stdout.buffer.write(b.getvalue())`]);

  it('GNU.sparse.name renames only an entry Go calls sparse (audit H2)', () => {
    const tar = pyTar(`reg('usr/share/doc/x', b'hello', {'GNU.sparse.name': 'etc/passwd'})
l = tarfile.TarInfo('usr/share/doc/l'); l.type = tarfile.SYMTYPE; l.linkname = 'x'; l.pax_headers = {'GNU.sparse.name': 'etc/.wh.shadow'}; t.addfile(l)
reg('GNUSparseFile.0/real', b'1\\n2\\n3\\n'.ljust(512, b'\\0') + b'abc', {'GNU.sparse.major': '1', 'GNU.sparse.minor': '0', 'GNU.sparse.realsize': '10', 'GNU.sparse.name': 'real'})`);
    const { entries } = scan(tar);
    expect(entries.map((e) => e.entry.name)).toEqual(['usr/share/doc/x', 'usr/share/doc/l', 'real']);
    expect(entries[0]!.entry.sparse).toBeUndefined();
    expect(entries[0]!.data.toString()).toBe('hello');
    expect(entries[2]!.entry).toMatchObject({ size: 10, sparse: [{ offset: 2, length: 3 }] });
  });

  it('GNU.sparse.* records without a version or a map leave a plain entry (audit H3a)', () => {
    const tar = pyTar(`reg('empty', b'', {'GNU.sparse.size': '1048576'})
reg('numblocks', b'ab', {'GNU.sparse.size': '1048576', 'GNU.sparse.numblocks': '0', 'GNU.sparse.name': 'elsewhere'})
reg('realsize', b'', {'GNU.sparse.realsize': '4096'})
reg('v2', b'xyz', {'GNU.sparse.major': '2', 'GNU.sparse.minor': '0', 'GNU.sparse.size': '100'})
reg('major-only', b'q', {'GNU.sparse.major': '1', 'GNU.sparse.size': '100'})
d = tarfile.TarInfo('dir'); d.type = tarfile.DIRTYPE; d.pax_headers = {'GNU.sparse.size': '10'}; t.addfile(d)`);
    const { entries } = scan(tar);
    expect(entries.map((e) => [e.entry.name, e.entry.size, e.entry.sparse, e.data.toString()])).toEqual([
      ['empty', 0, undefined, ''],
      ['numblocks', 2, undefined, 'ab'],
      ['realsize', 0, undefined, ''],
      ['v2', 3, undefined, 'xyz'],
      ['major-only', 1, undefined, 'q'],
      ['dir/', 0, undefined, ''],
    ]);
  });

  it('GNU sparse size: GNU.sparse.size before .realsize, else the stored size (audit H3b)', () => {
    const map = `b'1\\n5\\n3\\n'.ljust(512, b'\\0') + b'abc'`;
    const v10 = (records: string): Scanned =>
      scan(pyTar(`reg('GNUSparseFile.0/f', ${map}, {'GNU.sparse.major': '1', 'GNU.sparse.minor': '0', 'GNU.sparse.name': 'f', ${records}})`)).entries[0]!;
    expect(v10(`'GNU.sparse.realsize': '2000', 'GNU.sparse.size': '1000'`).entry).toMatchObject({ name: 'f', size: 1000 });
    expect(v10(`'GNU.sparse.realsize': '2000'`).entry.size).toBe(2000);
    expect(v10(`'GNU.sparse.size': '8'`).entry).toMatchObject({ size: 8, sparse: [{ offset: 5, length: 3 }] });
    expect(v10(``).entry.size).toBe(515); // no size record: Go keeps the header's (stored) size
    const v01 = scan(pyTar(`reg('g', b'abc', {'GNU.sparse.map': '4,3', 'GNU.sparse.numblocks': '1', 'GNU.sparse.realsize': '20', 'GNU.sparse.size': '10'})`)).entries[0]!;
    expect(v01.entry).toMatchObject({ name: 'g', size: 10, sparse: [{ offset: 4, length: 3 }] });
  });

  it('GNU sparse 0.x maps Go refuses are refused: records out of turn, no numblocks (audit H3c)', () => {
    const raw = (pairs: [string, string][]): Buffer =>
      Buffer.concat(pairs.map(([k, v]) => pax({ [k]: v })));
    const v00 = (pairs: [string, string][], stored = 4): Buffer =>
      Buffer.concat([ext('x', raw([['GNU.sparse.size', '100'], ['GNU.sparse.numblocks', '2'], ...pairs])), hdr('s', '0', stored), padTo512(Buffer.alloc(stored, 7)), TAR_EOF]);
    const O = 'GNU.sparse.offset';
    const N = 'GNU.sparse.numbytes';
    const good = scan(v00([[O, '10'], [N, '2'], [O, '50'], [N, '2']]));
    expect(good.entries[0]!.entry).toMatchObject({ name: 's', size: 100, sparse: [{ offset: 10, length: 2 }, { offset: 50, length: 2 }] });
    expect(code(() => scan(v00([[O, '10'], [O, '50'], [N, '2'], [N, '2']])))).toMatch(/^TAR_INVALID: GNU sparse 0.0 map: GNU.sparse.offset where GNU.sparse.numbytes is due/);
    expect(code(() => scan(v00([[N, '2'], [O, '10'], [N, '2'], [O, '50']])))).toMatch(/^TAR_INVALID: GNU sparse 0.0 map: GNU.sparse.numbytes where GNU.sparse.offset is due/);
    expect(code(() => scan(v00([[O, '10,60'], [N, '2'], [O, '50'], [N, '2']])))).toMatch(/^TAR_INVALID: bad PAX GNU.sparse.offset|^TAR_INVALID/);
    const noBlocks = Buffer.concat([ext('x', pax({ 'GNU.sparse.size': '100', 'GNU.sparse.map': '10,4' })), hdr('s', '0', 4), padTo512(Buffer.alloc(4)), TAR_EOF]);
    expect(code(() => scan(noBlocks))).toMatch(/^TAR_INVALID: GNU sparse 0.x entry without GNU.sparse.numblocks/);
  });
});
