/**
 * Test-fixture writer for containers/storage zstd:chunked blobs, written from formats.md §4 (layout
 * §4.1, footer §4.2, annotations §4.3, TOC §4.5, tar-split §4.6), independently of the reader.
 *
 * Frames exactly as the reference writer closes them: one frame with the raw tar bytes up to an
 * entry's payload (padding of the previous payload + headers), one frame per chunk of the payload,
 * …, a final frame with padding + the two EOF blocks; then skippable frames holding the compressed
 * TOC, the compressed tar-split and the 64-byte footer. `zstd -dc` of the blob is the tar.
 * Chunking is fixed-size (`chunkSize`) instead of the rolling checksum; `holes` turns runs of
 * ≥ 1024 zero bytes into `zeros` chunks (still stored as frames, like the reference).
 * Hooks let tests build authentic-but-lying TOCs (mutateToc / transformManifestJson: the checksum
 * and positions are computed after the hook) and hostile frames (frameOverride).
 */
import { createHash } from 'node:crypto';
import { compress } from 'zstd-napi';
import { padding, TAR_EOF, tarHeaderBlock, tarHeaders, type TarEntry } from './tar.js';

export interface ZstdChunkedEntry extends TarEntry {
  /** Nanoseconds of mtime: written as a PAX mtime record and in the TOC (RFC 3339 with fraction). */
  mtimeNsec?: number;
}

export interface ZstdChunkedOptions {
  /** Fixed-size chunk splits (default: one chunk per file). */
  chunkSize?: number;
  /** Emit runs of ≥ 1024 zero bytes as `zeros` chunks. */
  holes?: boolean;
  /** Write a tar-split and name its digest in the TOC (default true). */
  tarSplit?: boolean;
  /** Write the TOC times in this zone (minutes east of UTC), e.g. 60 → "+01:00". Default UTC "Z". */
  zoneOffsetMinutes?: number;
  /** 'old': 2020–2022 layout (40-byte "GnUlInUx" footer, io.containers.* annotations, no tar-split). */
  variant?: 'current' | 'old';
  /** Change the TOC object before it is serialized (lying TOCs; the checksum is computed after). */
  mutateToc?: (toc: TocJson) => void;
  /** Change the serialized TOC JSON (trailing data, case games). */
  transformManifestJson?: (json: string) => string;
  /** Change the tar-split text before it is compressed and hashed. */
  transformTarSplit?: (text: string) => string;
  /** Replace the compressed frame of chunk `index` of file `name`. */
  frameOverride?: (name: string, index: number, raw: Buffer) => Buffer | undefined;
}

export type TocEntryJson = Record<string, unknown>;
export interface TocJson {
  version: number;
  entries: TocEntryJson[];
  tarSplitDigest?: string;
}

export interface ZstdChunkedBlob {
  blob: Buffer;
  /** sha256 of the compressed manifest bytes. */
  tocDigest: string;
  /** sha256 of the uncompressed tar. */
  diffId: string;
  blobDigest: string;
  annotations: Record<string, string>;
  tar: Buffer;
  toc: TocJson;
  manifestJson: string;
  manifestOffset: number;
  manifestLength: number;
  tarSplitOffset?: number;
  tarSplitLength?: number;
  /** name → compressed extent of each chunk frame, in file order. */
  chunkFrames: Map<string, { offset: number; end: number; size: number; zeros: boolean }[]>;
}

const sha = (b: Uint8Array): string => 'sha256:' + createHash('sha256').update(b).digest('hex');

function rfc3339(sec: number, nsec: number, zoneMin: number): string {
  const d = new Date((sec + zoneMin * 60) * 1000);
  const p = (n: number, w = 2): string => String(n).padStart(w, '0');
  let s = `${p(d.getUTCFullYear(), 4)}-${p(d.getUTCMonth() + 1)}-${p(d.getUTCDate())}T${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())}`;
  if (nsec) s += '.' + String(nsec).padStart(9, '0').replace(/0+$/, '');
  if (zoneMin === 0) return s + 'Z';
  const a = Math.abs(zoneMin);
  return s + (zoneMin < 0 ? '-' : '+') + p(Math.floor(a / 60)) + ':' + p(a % 60);
}

function paxRecord(key: string, value: Buffer): Buffer {
  const body = Buffer.concat([Buffer.from(` ${key}=`), value, Buffer.from('\n')]);
  let len = body.length + 1;
  while (String(len).length + body.length !== len) len = String(len).length + body.length;
  return Buffer.concat([Buffer.from(String(len)), body]);
}

/** tar.ts headers, plus a PAX `mtime` record with the fraction when the entry has nanoseconds. */
function headersFor(e: ZstdChunkedEntry): Buffer {
  if (!e.mtimeNsec) return tarHeaders(e);
  const plain = tarHeaders(e);
  // Re-emit: the PAX header (if any) gets one more record; the ustar header is the last block.
  const ustar = plain.subarray(plain.length - 512);
  let records: Buffer = Buffer.alloc(0);
  if (plain.length > 512) {
    const size = parseInt(plain.subarray(124, 136).toString('latin1').replace(/\0.*$/, ''), 8);
    records = plain.subarray(512, 512 + size);
  }
  const frac = String(e.mtimeNsec).padStart(9, '0');
  const body = Buffer.concat([records, paxRecord('mtime', Buffer.from(`${e.mtime ?? 0}.${frac}`))]);
  const paxHdr = tarHeaderBlock({ name: 'PaxHeaders/' + e.name.slice(0, 80), typeflag: 'x', mode: 0o644, uid: 0, gid: 0, size: body.length, mtime: e.mtime ?? 0 });
  return Buffer.concat([paxHdr, body, padding(body.length), ustar]);
}

interface Piece {
  start: number;
  end: number;
  zeros: boolean;
}

function splitData(data: Buffer, chunkSize: number | undefined, holes: boolean): Piece[] {
  const segs: Piece[] = [];
  if (holes) {
    let i = 0;
    let dataStart = 0;
    while (i < data.length) {
      if (data[i] !== 0) {
        i++;
        continue;
      }
      let j = i;
      while (j < data.length && data[j] === 0) j++;
      if (j - i >= 1024) {
        if (i > dataStart) segs.push({ start: dataStart, end: i, zeros: false });
        segs.push({ start: i, end: j, zeros: true });
        dataStart = j;
      }
      i = j;
    }
    if (dataStart < data.length) segs.push({ start: dataStart, end: data.length, zeros: false });
  } else {
    segs.push({ start: 0, end: data.length, zeros: false });
  }
  if (!chunkSize) return segs;
  const out: Piece[] = [];
  for (const s of segs) {
    if (s.zeros) {
      out.push(s);
      continue;
    }
    for (let o = s.start; o < s.end; o += chunkSize) out.push({ start: o, end: Math.min(s.end, o + chunkSize), zeros: false });
  }
  return out;
}

const TOC_TYPE: Record<TarEntry['type'], string> = {
  reg: 'reg', dir: 'dir', symlink: 'symlink', hardlink: 'hardlink', char: 'char', block: 'block', fifo: 'fifo',
};

function isUtf8(b: Buffer): boolean {
  return Buffer.from(b.toString('utf8'), 'utf8').equals(b);
}

function skippable(payload: Buffer): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt32LE(0x184d2a50, 0);
  h.writeUInt32LE(payload.length, 4);
  return Buffer.concat([h, payload]);
}

export function buildZstdChunked(entries: readonly ZstdChunkedEntry[], opts: ZstdChunkedOptions = {}): ZstdChunkedBlob {
  const variant = opts.variant ?? 'current';
  const withTarSplit = variant === 'current' && opts.tarSplit !== false;
  const zone = opts.zoneOffsetMinutes ?? 0;
  const frames: Buffer[] = [];
  let blobPos = 0;
  const emit = (raw: Buffer): number => {
    const c = compress(raw);
    const off = blobPos;
    frames.push(c);
    blobPos += c.length;
    return off;
  };
  let pending: Buffer[] = [];
  const flush = (): void => {
    const raw = Buffer.concat(pending);
    pending = [];
    if (raw.length) emit(raw);
  };
  const tar: Buffer[] = [];
  let segment: Buffer[] = [];
  const tsLines: string[] = [];
  const tocEntries: TocEntryJson[] = [];
  const chunkFrames = new Map<string, { offset: number; end: number; size: number; zeros: boolean }[]>();

  for (const e of entries) {
    const hdr = headersFor(e);
    pending.push(hdr);
    segment.push(hdr);
    tar.push(hdr);
    const data = e.type === 'reg' ? (e.data ?? Buffer.alloc(0)) : Buffer.alloc(0);
    tsLines.push(JSON.stringify({ type: 2, payload: Buffer.concat(segment).toString('base64'), position: tsLines.length }));
    segment = [];
    // Like tar-split: a name that is not valid UTF-8 goes into name_raw; like Go's JSON encoder, the
    // TOC gets it with U+FFFD for the invalid bytes (Node's decoder agrees for lone invalid bytes).
    const tsName = e.rawName && !isUtf8(e.rawName) ? { name_raw: e.rawName.toString('base64') } : { name: e.rawName ? e.rawName.toString('utf8') : e.name };
    tsLines.push(JSON.stringify({ type: 1, ...tsName, ...(data.length ? { size: data.length } : {}), payload: 'AAAAAAAAAAA=', position: tsLines.length }));
    const tocName = e.rawName ? e.rawName.toString('utf8') : e.name;
    const base: TocEntryJson = { type: TOC_TYPE[e.type], name: tocName };
    if (e.rawLinkName) base['linkName'] = e.rawLinkName.toString('utf8');
    else if (e.linkName !== undefined) base['linkName'] = e.linkName;
    base['mode'] = e.mode ?? (e.type === 'dir' ? 0o755 : 0o644);
    if (data.length) base['size'] = data.length;
    if (e.uid) base['uid'] = e.uid;
    if (e.gid) base['gid'] = e.gid;
    if (e.mtime || e.mtimeNsec) base['modtime'] = rfc3339(e.mtime ?? 0, e.mtimeNsec ?? 0, zone);
    if (e.devMajor) base['devMajor'] = e.devMajor;
    if (e.devMinor) base['devMinor'] = e.devMinor;
    if (e.xattrs && Object.keys(e.xattrs).length) {
      base['xattrs'] = Object.fromEntries(
        Object.entries(e.xattrs).map(([k, v]) => [k, (typeof v === 'string' ? Buffer.from(v) : v).toString('base64')]),
      );
    }
    if (!data.length) {
      tocEntries.push(base);
      continue;
    }
    flush();
    const pieces = splitData(data, opts.chunkSize, opts.holes ?? false);
    const frameList: { offset: number; end: number; size: number; zeros: boolean }[] = [];
    pieces.forEach((pc, k) => {
      const raw = data.subarray(pc.start, pc.end);
      const override = opts.frameOverride?.(e.name, k, raw);
      let off: number;
      if (override) {
        off = blobPos;
        frames.push(override);
        blobPos += override.length;
      } else {
        off = emit(raw);
      }
      frameList.push({ offset: off, end: blobPos, size: raw.length, zeros: pc.zeros });
    });
    chunkFrames.set(e.name, frameList);
    base['digest'] = sha(data);
    base['offset'] = frameList[0]!.offset;
    base['endOffset'] = blobPos;
    if (pieces.length === 1) {
      tocEntries.push(base);
    } else {
      const c0 = pieces[0]!;
      base['chunkSize'] = c0.end - c0.start;
      base['chunkDigest'] = sha(data.subarray(c0.start, c0.end));
      if (c0.zeros) base['chunkType'] = 'zeros';
      tocEntries.push(base);
      for (let k = 1; k < pieces.length; k++) {
        const pc = pieces[k]!;
        tocEntries.push({
          type: 'chunk',
          name: tocName,
          offset: frameList[k]!.offset,
          chunkSize: pc.end - pc.start,
          chunkOffset: pc.start,
          chunkDigest: sha(data.subarray(pc.start, pc.end)),
          ...(pc.zeros ? { chunkType: 'zeros' } : {}),
        });
      }
    }
    tar.push(data);
    const pad = padding(data.length);
    pending.push(pad);
    segment.push(pad);
    tar.push(pad);
  }
  pending.push(TAR_EOF);
  segment.push(TAR_EOF);
  tar.push(TAR_EOF);
  flush();
  tsLines.push(JSON.stringify({ type: 2, payload: Buffer.concat(segment).toString('base64'), position: tsLines.length }));

  let tsText = tsLines.join('\n') + '\n';
  if (opts.transformTarSplit) tsText = opts.transformTarSplit(tsText);
  const tsCompressed = compress(Buffer.from(tsText));
  const toc: TocJson = { version: 1, entries: tocEntries };
  if (withTarSplit) toc.tarSplitDigest = sha(tsCompressed);
  opts.mutateToc?.(toc);
  let manifestJson = JSON.stringify(toc);
  if (opts.transformManifestJson) manifestJson = opts.transformManifestJson(manifestJson);
  const manifestRaw = Buffer.from(manifestJson);
  const manifest = compress(manifestRaw);
  const manifestOffset = blobPos + 8;
  const parts = [...frames, skippable(manifest)];
  let tarSplitOffset: number | undefined;
  const tsRaw = Buffer.from(tsText);
  if (withTarSplit) {
    tarSplitOffset = manifestOffset + manifest.length + 8;
    parts.push(skippable(tsCompressed));
  }
  const tocDigest = sha(manifest);
  const annotations: Record<string, string> = {};
  if (variant === 'current') {
    const footer = Buffer.alloc(64);
    footer.writeBigUInt64LE(BigInt(manifestOffset), 0);
    footer.writeBigUInt64LE(BigInt(manifest.length), 8);
    footer.writeBigUInt64LE(BigInt(manifestRaw.length), 16);
    footer.writeBigUInt64LE(1n, 24);
    if (tarSplitOffset !== undefined) {
      footer.writeBigUInt64LE(BigInt(tarSplitOffset), 32);
      footer.writeBigUInt64LE(BigInt(tsCompressed.length), 40);
      footer.writeBigUInt64LE(BigInt(tsRaw.length), 48);
    }
    Buffer.from('GNUlInUx', 'latin1').copy(footer, 56);
    parts.push(skippable(footer));
    annotations['io.github.containers.zstd-chunked.manifest-checksum'] = tocDigest;
    annotations['io.github.containers.zstd-chunked.manifest-position'] = `${manifestOffset}:${manifest.length}:${manifestRaw.length}:1`;
    if (tarSplitOffset !== undefined) {
      annotations['io.github.containers.zstd-chunked.tarsplit-position'] = `${tarSplitOffset}:${tsCompressed.length}:${tsRaw.length}`;
    }
  } else {
    const footer = Buffer.alloc(40);
    footer.writeBigUInt64LE(BigInt(manifestOffset), 0);
    footer.writeBigUInt64LE(BigInt(manifest.length), 8);
    footer.writeBigUInt64LE(BigInt(manifestRaw.length), 16);
    footer.writeBigUInt64LE(1n, 24);
    Buffer.from('GnUlInUx', 'latin1').copy(footer, 32);
    parts.push(skippable(footer));
    annotations['io.containers.zstd-chunked.manifest-checksum'] = tocDigest;
    annotations['io.containers.zstd-chunked.manifest-position'] = `${manifestOffset}:${manifest.length}:${manifestRaw.length}:1`;
  }
  const blob = Buffer.concat(parts);
  const tarBuf = Buffer.concat(tar);
  return {
    blob,
    tocDigest,
    diffId: sha(tarBuf),
    blobDigest: sha(blob),
    annotations,
    tar: tarBuf,
    toc,
    manifestJson,
    manifestOffset,
    manifestLength: manifest.length,
    ...(tarSplitOffset !== undefined ? { tarSplitOffset, tarSplitLength: tsCompressed.length } : {}),
    chunkFrames,
  };
}

/** Deterministic pseudo-random bytes (tests need incompressible-ish content without Math.random). */
export function pseudoRandomBytes(n: number, seed = 1): Buffer {
  const b = Buffer.alloc(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    b[i] = x & 0xff;
  }
  return b;
}

/**
 * A layer exercising every entry kind the zstd:chunked TOC can describe: modes incl. suid, owners,
 * nanosecond times, xattrs (security.capability is binary), symlink, hardlink, devices, fifo,
 * whiteout, opaque dir, long and unicode names, empty file, and a multi-chunk file with a hole.
 */
export function zstdChunkedSampleEntries(): ZstdChunkedEntry[] {
  const big = Buffer.concat([pseudoRandomBytes(150_000, 7), Buffer.alloc(20_000), pseudoRandomBytes(90_001, 9)]);
  const cap = Buffer.from('0100000200200000000000000000000000000000', 'hex');
  const longDir = 'long/' + 'd'.repeat(150);
  return [
    { name: 'bin/', type: 'dir', mode: 0o755, mtime: 1_600_000_000 },
    { name: 'bin/tool', type: 'reg', mode: 0o4755, uid: 1000, gid: 1001, mtime: 1_700_000_000, mtimeNsec: 123_456_789, data: Buffer.from('#!/bin/sh\necho tool\n'), xattrs: { 'security.capability': cap, 'user.comment': 'hello' } },
    { name: 'bin/link', type: 'symlink', linkName: 'tool', mtime: 1_700_000_001 },
    { name: 'bin/hard', type: 'hardlink', linkName: 'bin/tool', mtime: 1_700_000_000 },
    { name: 'dev/', type: 'dir' },
    { name: 'dev/null', type: 'char', mode: 0o666, devMajor: 1, devMinor: 3 },
    { name: 'dev/sda', type: 'block', mode: 0o660, gid: 6, devMajor: 8, devMinor: 0 },
    { name: 'run/fifo', type: 'fifo', mode: 0o600, uid: 70_000, gid: 70_001 },
    { name: 'etc/.wh.removed', type: 'reg', mtime: 1_650_000_000 },
    { name: 'opq/', type: 'dir', mode: 0o700 },
    { name: 'opq/.wh..wh..opq', type: 'reg' },
    { name: 'opq/kept', type: 'reg', data: Buffer.from('kept\n') },
    { name: `${longDir}/${'f'.repeat(200)}.txt`, type: 'reg', data: Buffer.from('long name\n') },
    { name: 'unicode/日本語-ñ-é.txt', type: 'reg', data: Buffer.from('unicode ✓\n') },
    { name: 'empty', type: 'reg', mode: 0o600 },
    { name: 'big/data.bin', type: 'reg', mode: 0o644, mtime: 1_234_567_890, mtimeNsec: 1, data: big },
    { name: 'big/small.bin', type: 'reg', data: pseudoRandomBytes(3000, 3) },
  ];
}
