/**
 * Test-fixture eStargz writer, written from formats.md §2–§3 (no third-party code): gzip eStargz
 * (51-byte footer), legacy stargz (47-byte footer, no chunkDigest, "NumLink": 0, "stargz.toc" FEXTRA
 * on the TOC member) and the estargz-zstd variant (TOC in a skippable frame, 40-byte "GnUlInUx" footer).
 *
 * The blob is the tar stream cut into compression members: every payload / chunk starts a new member
 * (unless `minChunkSize` lets it share the current one: then the TOC records `innerOffset`), the
 * headers of following entries trail in the same member. The landmark always starts a member.
 * The TOC is serialised like Go's json.MarshalIndent(toc, "", "\t") with HTML escaping.
 *
 * Test hooks (`editToc`, `tocJson`) produce deliberately wrong TOCs whose digest is still reported
 * correctly, so readers can be tested past the TOC-digest check.
 */
import { createHash } from 'node:crypto';
import { crc32, deflateRawSync, gzipSync } from 'node:zlib';
import { compress as zstdCompress } from 'zstd-napi';
import type { Digest } from '../../../src/core/digest.js';
import { padding, tarHeaderBlock, tarHeaders, TAR_EOF, type TarEntry } from './tar.js';

export interface EStargzWriterOptions {
  /** Chunk size for large files (default 4 MiB). */
  chunkSize?: number;
  /** Payloads join the current member while it holds fewer than this many bytes (sets innerOffset). */
  minChunkSize?: number;
  /** Files placed first, followed by `.prefetch.landmark`; otherwise `.no.prefetch.landmark` is first. */
  prioritized?: string[];
  legacy?: boolean;
  compression?: 'gzip' | 'zstd';
  /** Edit the TOC object before it is serialised (negative tests). */
  editToc?: (toc: JTOC) => void;
  /** Replace the serialised TOC bytes (negative tests). */
  tocJson?: (json: Buffer) => Buffer;
}

export interface EStargzFixture {
  blob: Buffer;
  tocDigest: Digest;
  diffId: Digest;
  blobDigest: Digest;
  tocJson: Buffer;
  uncompressedSize: number;
  /** Blob offset of the TOC member (gzip) or of the compressed TOC frame (zstd). */
  tocOffset: number;
  /** Blob offsets at which members/frames of the payload area start. */
  memberOffsets: number[];
}

export type TocJsonEntry = Record<string, unknown>;
export interface JTOC {
  version: number;
  entries: TocJsonEntry[];
}

const LANDMARK_BYTE = Buffer.from([0x0f]);

export function sha256(b: Buffer): Digest {
  return ('sha256:' + createHash('sha256').update(b).digest('hex')) as Digest;
}

/** Go json.MarshalIndent(v, "", "\t") for our plain objects: same layout, HTML-escaped. */
export function marshalIndent(v: unknown): Buffer {
  const s = JSON.stringify(v, null, '\t').replace(/[<>&\u2028\u2029]/g, (c) => '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0'));
  return Buffer.from(s, 'utf8');
}

/** RFC 3339 as Go formats a UTC time rounded to seconds; '' for zero / the epoch (omitted). */
function modtime(sec: number | undefined): string {
  if (!sec) return '';
  return new Date(sec * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

function normName(n: string): string {
  return n.replace(/^(\.\/)+/, '').replace(/\/+$/, '');
}

/** Order entries: prioritized files (with their parent dirs) then `.prefetch.landmark`, or the landmark first. */
function ordered(entries: readonly TarEntry[], prioritized: readonly string[] | undefined): TarEntry[] {
  if (!prioritized?.length) {
    return [{ name: '.no.prefetch.landmark', type: 'reg', mode: 0, data: LANDMARK_BYTE }, ...entries];
  }
  const placed = new Set<TarEntry>();
  const out: TarEntry[] = [];
  const byName = new Map(entries.map((e) => [normName(e.name), e]));
  for (const p of prioritized) {
    const parts = normName(p).split('/');
    for (let i = 1; i <= parts.length; i++) {
      const e = byName.get(parts.slice(0, i).join('/'));
      if (e && !placed.has(e)) {
        placed.add(e);
        out.push(e);
      }
    }
  }
  out.push({ name: '.prefetch.landmark', type: 'reg', mode: 0, data: LANDMARK_BYTE });
  for (const e of entries) if (!placed.has(e)) out.push(e);
  return out;
}

/** A gzip member with FEXTRA "stargz.toc" (legacy TOC member header, formats.md §2.3). */
function gzipWithExtra(data: Buffer, extra: Buffer): Buffer {
  const hdr = Buffer.from([0x1f, 0x8b, 0x08, 0x04, 0, 0, 0, 0, 0x02, 0xff, extra.length & 0xff, extra.length >> 8]);
  const trailer = Buffer.alloc(8);
  trailer.writeUInt32LE(crc32(data) >>> 0, 0);
  trailer.writeUInt32LE(data.length >>> 0, 4);
  return Buffer.concat([hdr, extra, deflateRawSync(data), trailer]);
}

export function estargzFooter(tocOffset: number): Buffer {
  return Buffer.concat([
    Buffer.from('1f8b08040000000000ff1a0053471600', 'hex'),
    Buffer.from(tocOffset.toString(16).padStart(16, '0') + 'STARGZ', 'latin1'),
    Buffer.from('010000ffff0000000000000000', 'hex'),
  ]);
}

export function legacyFooter(tocOffset: number): Buffer {
  return Buffer.concat([
    Buffer.from('1f8b08040000000000ff1600', 'hex'),
    Buffer.from(tocOffset.toString(16).padStart(16, '0') + 'STARGZ', 'latin1'),
    Buffer.from('010000ffff0000000000000000', 'hex'),
  ]);
}

export function skippableFrame(payload: Buffer): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt32LE(0x184d2a50, 0);
  h.writeUInt32LE(payload.length, 4);
  return Buffer.concat([h, payload]);
}

/** The 48-byte footer frame of the estargz-zstd variant. */
export function zstdFooterFrame(tocOffset: number, clen: number, ulen: number): Buffer {
  const f = Buffer.alloc(40);
  f.writeBigUInt64LE(BigInt(tocOffset), 0);
  f.writeBigUInt64LE(BigInt(clen), 8);
  f.writeBigUInt64LE(BigInt(ulen), 16);
  f.writeBigUInt64LE(1n, 24);
  f.write('GnUlInUx', 32, 'latin1');
  return skippableFrame(f);
}

/** Uncompressed TOC tar entry: header + JSON + padding + tar EOF. */
export function tocTarEntry(json: Buffer): Buffer {
  const h = tarHeaderBlock({ name: 'stargz.index.json', typeflag: '0', mode: 0, uid: 0, gid: 0, size: json.length, mtime: 0 });
  return Buffer.concat([h, json, padding(json.length), TAR_EOF]);
}

export function buildEStargz(entries: readonly TarEntry[], opts: EStargzWriterOptions = {}): EStargzFixture {
  const zstd = opts.compression === 'zstd';
  const legacy = opts.legacy === true;
  if (zstd && legacy) throw new Error('legacy stargz is gzip only');
  const chunkSize = opts.chunkSize ?? 4 * 1024 * 1024;
  const compressMember = (b: Buffer): Buffer => (zstd ? zstdCompress(b) : gzipSync(b));

  const out: Buffer[] = [];
  const plain: Buffer[] = [];
  const memberOffsets: number[] = [];
  let blobPos = 0;
  let cur: Buffer[] = [];
  let curLen = 0;
  let curStart = 0;
  const flush = (): void => {
    if (curLen === 0) return;
    const c = compressMember(Buffer.concat(cur));
    memberOffsets.push(curStart);
    out.push(c);
    blobPos += c.length;
    cur = [];
    curLen = 0;
    curStart = blobPos;
  };
  const write = (b: Buffer): void => {
    if (b.length === 0) return;
    cur.push(b);
    plain.push(b);
    curLen += b.length;
  };

  const tocEntries: TocJsonEntry[] = [];
  const lastUname = new Map<number, string>();
  const lastGname = new Map<number, string>();
  for (const e of ordered(entries, opts.prioritized)) {
    write(tarHeaders(e));
    const data = e.type === 'reg' ? (e.data ?? Buffer.alloc(0)) : Buffer.alloc(0);
    const uid = e.uid ?? 0;
    const gid = e.gid ?? 0;
    const ent: TocJsonEntry = { name: e.name, type: e.type };
    if (data.length) ent['size'] = data.length;
    const mt = modtime(e.mtime);
    if (mt) ent['modtime'] = mt;
    if (e.linkName !== undefined && (e.type === 'symlink' || e.type === 'hardlink')) ent['linkName'] = e.linkName;
    const mode = e.mode ?? (e.type === 'dir' ? 0o755 : 0o644);
    if (mode) ent['mode'] = mode;
    if (uid) ent['uid'] = uid;
    if (gid) ent['gid'] = gid;
    if (e.uname !== undefined && lastUname.get(uid) !== e.uname) {
      ent['userName'] = e.uname;
      lastUname.set(uid, e.uname);
    }
    if (e.gname !== undefined && lastGname.get(gid) !== e.gname) {
      ent['groupName'] = e.gname;
      lastGname.set(gid, e.gname);
    }
    const chunkFields: TocJsonEntry[] = [];
    const isLandmark = normName(e.name) === '.prefetch.landmark' || normName(e.name) === '.no.prefetch.landmark';
    for (let off = 0; off < data.length; off += chunkSize) {
      const chunk = data.subarray(off, Math.min(off + chunkSize, data.length));
      if (opts.minChunkSize === undefined || isLandmark || curLen >= opts.minChunkSize) flush();
      const f: TocJsonEntry = {};
      if (curStart) f['offset'] = curStart;
      if (curLen) f['innerOffset'] = curLen;
      if (off) f['chunkOffset'] = off;
      if (data.length > chunkSize && off + chunkSize < data.length) f['chunkSize'] = chunk.length;
      if (!legacy) f['chunkDigest'] = sha256(chunk);
      chunkFields.push(f);
      write(chunk);
    }
    write(padding(data.length));
    // Go struct field order: offset/innerOffset, devices, [NumLink], xattrs, digest, chunk fields.
    const first = chunkFields[0] ?? {};
    if (first['offset'] !== undefined) ent['offset'] = first['offset'];
    if (first['innerOffset'] !== undefined) ent['innerOffset'] = first['innerOffset'];
    if (e.type === 'char' || e.type === 'block') {
      if (e.devMajor) ent['devMajor'] = e.devMajor;
      if (e.devMinor) ent['devMinor'] = e.devMinor;
    }
    if (legacy) ent['NumLink'] = 0;
    const xk = Object.keys(e.xattrs ?? {}).sort();
    if (xk.length) {
      const xo: Record<string, string> = {};
      for (const k of xk) {
        const v = e.xattrs![k]!;
        xo[k] = (typeof v === 'string' ? Buffer.from(v) : v).toString('base64');
      }
      ent['xattrs'] = xo;
    }
    if (e.type === 'reg') ent['digest'] = sha256(data);
    if (first['chunkSize'] !== undefined) ent['chunkSize'] = first['chunkSize'];
    if (first['chunkDigest'] !== undefined) ent['chunkDigest'] = first['chunkDigest'];
    tocEntries.push(ent);
    for (const f of chunkFields.slice(1)) {
      const c: TocJsonEntry = { name: e.name, type: 'chunk' };
      for (const k of ['offset', 'innerOffset']) if (f[k] !== undefined) c[k] = f[k];
      if (legacy) c['NumLink'] = 0;
      for (const k of ['chunkOffset', 'chunkSize', 'chunkDigest']) if (f[k] !== undefined) c[k] = f[k];
      tocEntries.push(c);
    }
  }
  flush();

  const toc: JTOC = { version: 1, entries: tocEntries };
  opts.editToc?.(toc);
  let tocJson = marshalIndent(toc);
  if (opts.tocJson) tocJson = opts.tocJson(tocJson);

  let tocOffset: number;
  if (zstd) {
    const c = zstdCompress(tocJson);
    tocOffset = blobPos + 8;
    out.push(skippableFrame(c), zstdFooterFrame(tocOffset, c.length, tocJson.length));
  } else {
    tocOffset = blobPos;
    const t = tocTarEntry(tocJson);
    plain.push(t);
    out.push(legacy ? gzipWithExtra(t, Buffer.from('stargz.toc')) : gzipSync(t));
    out.push(legacy ? legacyFooter(tocOffset) : estargzFooter(tocOffset));
  }
  const blob = Buffer.concat(out);
  const un = Buffer.concat(plain);
  return {
    blob,
    tocDigest: sha256(tocJson),
    diffId: sha256(un),
    blobDigest: sha256(blob),
    tocJson,
    uncompressedSize: un.length,
    tocOffset,
    memberOffsets,
  };
}

/** Deterministic pseudo-random bytes (incompressible content for fixtures). */
export function prand(n: number, seed: string): Buffer {
  const out = Buffer.alloc(n);
  let block = createHash('sha256').update(seed).digest();
  for (let off = 0; off < n; off += 32) {
    block.copy(out, off, 0, Math.min(32, n - off));
    block = createHash('sha256').update(block).digest();
  }
  return out;
}

/**
 * A layer exercising every entry kind the model has: owners and names, setuid, empty file, xattrs
 * (incl. binary), symlink, hardlink, devices, fifo, whiteout, opaque dir, HTML-escaped unicode name,
 * implied parents, a root entry.
 */
export function sampleEntries(): TarEntry[] {
  return [
    { name: './', type: 'dir', mode: 0o755, mtime: 1704067100 },
    { name: './etc/', type: 'dir', mode: 0o750, uid: 1000, gid: 1001, uname: 'u', gname: 'g', mtime: 1704067200 },
    { name: './etc/passwd', type: 'reg', data: Buffer.from('root:x:0:0:root:/root:/bin/sh\n'), uid: 1000, gid: 1001, uname: 'u', gname: 'g', mtime: 1704067201 },
    { name: './etc/setuid', type: 'reg', data: prand(3000, 'setuid'), mode: 0o4755 },
    { name: './etc/empty', type: 'reg', data: Buffer.alloc(0), mode: 0o600, uid: 7, gid: 8 },
    { name: './etc/xattr', type: 'reg', data: Buffer.from('x'), xattrs: { 'user.note': 'hello', 'security.capability': Buffer.from([1, 0, 0, 2, 0xff, 0, 0x80]) } },
    { name: './etc/link', type: 'symlink', linkName: 'passwd', mtime: 1704067202 },
    { name: './etc/hard', type: 'hardlink', linkName: './etc/passwd' },
    { name: './dev/', type: 'dir' },
    { name: './dev/null', type: 'char', devMajor: 1, devMinor: 3, mode: 0o666 },
    { name: './dev/sda', type: 'block', devMajor: 8, devMinor: 16, mode: 0o660, gid: 6 },
    { name: './dev/fifo', type: 'fifo', mode: 0o600 },
    { name: './gone/', type: 'dir' },
    { name: './gone/.wh.old', type: 'reg', data: Buffer.alloc(0), uid: 3, gid: 4, mtime: 1704067300 },
    { name: './opq/', type: 'dir' },
    { name: './opq/.wh..wh..opq', type: 'reg', data: Buffer.alloc(0) },
    { name: './opq/keep', type: 'reg', data: Buffer.from('k') },
    { name: './uni/файл <&>.txt', type: 'reg', data: prand(70_000, 'uni'), mtime: 1704067400 },
    { name: './implied/deep/file', type: 'reg', data: prand(100, 'deep') },
  ];
}
