/**
 * The LayerRecord payload of a plain layer: a compact JSON array of its RawEntry[] (one object per
 * tar entry, archive order, short keys, Buffers as base64), base64-encoded. Chunk spans are not
 * stored: they follow from the compression, the file's data offset in the tar and the fixed piece
 * size (params.chunkSize), exactly as openPlainLayer cut them. Loading validates every field's type
 * and rebuilds the index with the same options as openPlainLayer; there is no TOC digest to
 * re-verify (the blob digest and diffID were verified by the pass that produced the record).
 */
import { parseDigest, sha256Of, type Digest } from '../../core/digest.js';
import { DEFAULT_LIMITS, type Limits } from '../../core/limits.js';
import { compressionOfFormat } from '../detect.js';
import { FormatError } from '../errors.js';
import type { LayerRecord } from '../layer-reader.js';
import { byteStringFromText } from '../byte-string.js';
import type { ByteString, ChunkRef, Compression, LayerFormat, LayerIndex, RawEntry, RawEntryType } from '../model.js';
import { buildLayerIndex } from '../overlay-view.js';
import { decodePayload, encodePayload, PAYLOAD_GZIP } from '../record-payload.js';
import type { SparseSegment } from './tar-scanner.js';

/** Cap on a plain record's inflated entry list (the record is the daemon's own, hash-checked file; this only bounds a tampered one). */
const MAX_PAYLOAD_JSON = 1024 * 1024 * 1024;

/** Largest piece a plain layer's file content is cut into. */
export const PLAIN_CHUNK_BYTES = 1024 * 1024;

/**
 * params.names of records whose names are ByteStrings (one char per byte). Records without it were
 * written when names were strict UTF-8 text: their names are converted on load.
 */
export const PLAIN_NAMES_AS_BYTES = 1;

interface CompactEntry {
  n: string; t: RawEntryType; m: number; u: number; g: number; s: number; ts: number; tn: number;
  l?: string; dj?: number; dn?: number; x?: Record<string, string>;
  /** reg: tar offset of the content, whole-file sha256 hex, chunk sha256 hexes (sparse: of the stored pieces). */
  o?: number; d?: string; c?: string[];
  /** GNU sparse file: its stored segments as [offset, length, offset, length, …]. */
  sp?: number[];
}

const PLAIN_FORMATS: ReadonlySet<LayerFormat> = new Set(['tar', 'tar+gzip', 'tar+zstd']);

/** Span of a piece of content at tar offset `tarOffset` (see openPlainLayer for why). */
export function plainSpan(compression: Compression, blobSize: number, tarOffset: number, size: number): ChunkRef['span'] {
  return compression === 'none'
    ? { offset: tarOffset, end: tarOffset + size, innerOffset: 0 }
    : { offset: 0, end: blobSize, innerOffset: tarOffset };
}

/** A piece of a sparse file: `stored` = offset within the stored content, undefined for a hole (zeros). */
export interface SparsePiece {
  readonly fileOffset: number;
  readonly size: number;
  readonly stored?: number;
}

/**
 * A GNU sparse file cut into pieces of at most `chunk` bytes, in file order: the stored segments
 * (read from the tar) and the holes between and after them (zeros, never fetched). Segments come
 * checked by the tar scanner (sorted, disjoint, inside `size`).
 */
export function sparsePieces(size: number, segments: readonly SparseSegment[], chunk: number = PLAIN_CHUNK_BYTES): SparsePiece[] {
  const out: SparsePiece[] = [];
  const cut = (from: number, to: number, stored?: number): void => {
    for (let o = from; o < to; o += chunk) out.push({
      fileOffset: o,
      size: Math.min(chunk, to - o),
      ...(stored !== undefined ? { stored: stored + (o - from) } : {}),
    });
  };
  let pos = 0;
  let stored = 0;
  for (const seg of segments) {
    cut(pos, seg.offset);
    cut(seg.offset, seg.offset + seg.length, stored);
    stored += seg.length;
    pos = seg.offset + seg.length;
  }
  cut(pos, size);
  return out;
}

/**
 * The digest of a piece the pass did not hash (OpenLayerOptions.unaddressedPieces: extract keeps the
 * pieces itself). All zeros: no known bytes hash to it, so a read through such an index fails its
 * verification instead of serving anything.
 */
export const UNADDRESSED_DIGEST = `sha256:${'0'.repeat(64)}` as Digest;

/** sha256 of `n` zero bytes (a hole piece), memoised: only a few sizes ever occur. */
const zeroDigests = new Map<number, Digest>();
function zeroDigest(n: number): Digest {
  let d = zeroDigests.get(n);
  if (d === undefined) {
    d = sha256Of(Buffer.alloc(n));
    if (zeroDigests.size > 64) zeroDigests.clear();
    zeroDigests.set(n, d);
  }
  return d;
}

/** The ChunkRef of a sparse piece (data: its digest; holes: zeros). */
export function sparseChunk(p: SparsePiece, digest: Digest | undefined, compression: Compression, blobSize: number, dataOffset: number): ChunkRef {
  if (p.stored === undefined) return {
    digest: zeroDigest(p.size),
    fileOffset: p.fileOffset,
    size: p.size,
    span: { offset: 0, end: 0, innerOffset: 0 },
    zeros: true,
  };
  return { digest: digest!, fileOffset: p.fileOffset, size: p.size, span: plainSpan(compression, blobSize, dataOffset + p.stored, p.size) };
}

/** Limits for buildLayerIndex: compressed plain spans run from the blob start, so the span cap is lifted. */
export function plainBuildLimits(limits: Limits, blobSize: number): Limits {
  return { ...limits, maxCompressedSpanBytes: Math.max(limits.maxCompressedSpanBytes, blobSize) };
}

export function encodePlainPayload(
  raw: readonly RawEntry[],
  dataOffsets: readonly number[],
  sparse: ReadonlyMap<number, readonly SparseSegment[]> = new Map(),
): string {
  const out: CompactEntry[] = raw.map((e, i) => {
    const c: CompactEntry = { n: e.name, t: e.type, m: e.mode, u: e.uid, g: e.gid, s: e.size, ts: e.mtimeSec, tn: e.mtimeNsec };
    if (e.linkName !== undefined) c.l = e.linkName;
    if (e.devMajor || e.devMinor) [c.dj, c.dn] = [e.devMajor, e.devMinor];
    if (e.xattrs.size) c.x = Object.fromEntries([...e.xattrs].map(([k, v]) => [k, v.toString('base64')]));
    if (e.type === 'reg' && e.size > 0) {
      c.o = dataOffsets[i]!;
      if (e.digest !== undefined) c.d = hexOf(e.digest);
      c.c = e.chunks.filter((k) => !k.zeros).map((k) => hexOf(k.digest));
      const sp = sparse.get(i);
      if (sp) c.sp = sp.flatMap((g) => [g.offset, g.length]);
    }
    return c;
  });
  return encodePayload(Buffer.from(JSON.stringify(out)));
}

function hexOf(d: Digest): string {
  return d.slice('sha256:'.length);
}

export function loadPlainRecord(record: LayerRecord, limits: Limits = DEFAULT_LIMITS): LayerIndex {
  const fields = new RecordFields(record);
  if (record.version !== 1 || !PLAIN_FORMATS.has(record.format)) fields.bad('not a plain layer record');
  const compression = compressionOfFormat(record.format);
  const chunkSize = record.params['chunkSize'] ?? PLAIN_CHUNK_BYTES;
  if (!Number.isSafeInteger(chunkSize) || chunkSize <= 0 || chunkSize > limits.maxChunkBytes) fields.bad('bad chunkSize');
  const blobSize = record.blobSize;
  if (!Number.isSafeInteger(blobSize) || blobSize < 0) fields.bad('bad blobSize');
  const cut: PieceCut = { compression, blobSize, chunkSize };
  const raw = fields.payload(limits).map((o) => fields.entry(o, cut));
  const opt = <K extends string>(k: K, v: string | undefined): Partial<Record<K, Digest>> =>
    v === undefined ? {} : ({ [k]: parseDigest(v, k) } as Record<K, Digest>);
  return buildLayerIndex(
    raw,
    {
      format: record.format,
      compression,
      blobSize,
      ...opt('blobDigest', record.blobDigest),
      ...opt('diffId', record.diffId),
      ...(record.uncompressedSize !== undefined ? { uncompressedSize: record.uncompressedSize } : {}),
    },
    { hideEstargzArtefacts: false, limits: plainBuildLimits(limits, blobSize) },
  );
}

/** How openPlainLayer cut the files into pieces: what turns a stored data offset back into chunk spans. */
interface PieceCut {
  readonly compression: Compression;
  readonly blobSize: number;
  readonly chunkSize: number;
}

const ENTRY_TYPES = new Set<string>(['dir', 'reg', 'symlink', 'hardlink', 'char', 'block', 'fifo']);

/** A record's payload read field by field; any field of the wrong type is TOC_MALFORMED. */
class RecordFields {
  readonly #record: LayerRecord;
  readonly #namesAsBytes: boolean;

  constructor(record: LayerRecord) {
    this.#record = record;
    this.#namesAsBytes = record.params['names'] === PLAIN_NAMES_AS_BYTES;
  }

  bad(why: string): never {
    const blob = this.#record.blobDigest;
    throw new FormatError('TOC_MALFORMED', `plain layer record: ${why}`, blob !== undefined ? { blob } : {});
  }

  payload(limits: Limits): unknown[] {
    let list: unknown;
    try {
      const r = this.#record;
      const bytes =
        r.params[PAYLOAD_GZIP] === 1
          ? decodePayload(r, MAX_PAYLOAD_JSON, r.blobDigest !== undefined ? { blob: r.blobDigest } : {})
          : Buffer.from(r.payload, 'base64');
      list = JSON.parse(bytes!.toString('utf8'));
    } catch {
      return this.bad('payload is not JSON');
    }
    if (!Array.isArray(list)) return this.bad('payload is not an array');
    if (list.length > limits.maxEntries) this.bad('too many entries');
    return list;
  }

  entry(o: unknown, cut: PieceCut): RawEntry {
    if (typeof o !== 'object' || o === null) return this.bad('entry is not an object');
    const c = o as Record<string, unknown>;
    const type = this.#str(c['t'], 'type');
    if (!ENTRY_TYPES.has(type)) this.bad('bad type');
    const size = this.#int(c['s'], 'size');
    const content = type === 'reg' && size > 0 ? this.#content(c, size, cut) : { chunks: [] };
    return {
      name: this.#name(c['n'], 'name'),
      type: type as RawEntryType,
      mode: this.#int(c['m'], 'mode'),
      uid: this.#int(c['u'], 'uid'),
      gid: this.#int(c['g'], 'gid'),
      size,
      mtimeSec: this.#int(c['ts'], 'mtime', true),
      mtimeNsec: this.#int(c['tn'], 'mtime nsec'),
      ...(c['l'] !== undefined ? { linkName: this.#name(c['l'], 'link name') } : {}),
      devMajor: c['dj'] === undefined ? 0 : this.#int(c['dj'], 'devmajor'),
      devMinor: c['dn'] === undefined ? 0 : this.#int(c['dn'], 'devminor'),
      xattrs: this.#xattrs(c['x']),
      ...content,
    };
  }

  /** A regular file's pieces (spans from its data offset) and whole-file digest. */
  #content(c: Record<string, unknown>, size: number, cut: PieceCut): Pick<RawEntry, 'chunks' | 'digest'> {
    const off = this.#int(c['o'], 'data offset');
    const list = Array.isArray(c['c']) ? (c['c'] as unknown[]) : this.bad('bad chunk list');
    if (c['sp'] !== undefined) return { chunks: this.#sparse(c['sp'], list, size, off, cut) };
    if (list.length !== Math.ceil(size / cut.chunkSize)) this.bad('chunk count does not match the size');
    const chunks = list.map((h, i): ChunkRef => {
      const fileOffset = i * cut.chunkSize;
      const n = Math.min(cut.chunkSize, size - fileOffset);
      return { digest: this.#digest(h, 'chunk digest'), fileOffset, size: n, span: plainSpan(cut.compression, cut.blobSize, off + fileOffset, n) };
    });
    return { chunks, ...(c['d'] !== undefined ? { digest: this.#digest(c['d'], 'file digest') } : {}) };
  }

  /** A GNU sparse file: the pieces openPlainLayer cut from its map (stored ones named by `list`, holes zeros). */
  #sparse(sp: unknown, list: readonly unknown[], size: number, off: number, cut: PieceCut): ChunkRef[] {
    const nums = Array.isArray(sp) ? (sp as unknown[]).map((v) => this.#int(v, 'sparse map')) : this.bad('bad sparse map');
    const segs: SparseSegment[] = [];
    let end = 0;
    for (let k = 0; k + 1 < nums.length; k += 2) {
      if (nums[k]! < end || nums[k + 1]! <= 0 || nums[k]! + nums[k + 1]! > size) this.bad('bad sparse map');
      segs.push({ offset: nums[k]!, length: nums[k + 1]! });
      end = nums[k]! + nums[k + 1]!;
    }
    let d = 0;
    const chunks = sparsePieces(size, segs, cut.chunkSize).map((p) =>
      sparseChunk(p, p.stored === undefined ? undefined : this.#digest(list[d++], 'chunk digest'), cut.compression, cut.blobSize, off),
    );
    if (d !== list.length) this.bad('chunk count does not match the sparse map');
    return chunks;
  }

  #xattrs(x: unknown): Map<string, Buffer> {
    const xattrs = new Map<string, Buffer>();
    if (x === undefined) return xattrs;
    if (typeof x !== 'object' || x === null) this.bad('bad xattrs');
    for (const [k, v] of Object.entries(x as object)) xattrs.set(k, Buffer.from(this.#str(v, 'xattr'), 'base64'));
    return xattrs;
  }

  #int(v: unknown, what: string, signed = false): number {
    return typeof v === 'number' && Number.isSafeInteger(v) && (signed || v >= 0) ? v : this.bad(`bad ${what}`);
  }

  #str(v: unknown, what: string): string {
    return typeof v === 'string' ? v : this.bad(`bad ${what}`);
  }

  #name(v: unknown, what: string): ByteString {
    const s = this.#str(v, what);
    if (!this.#namesAsBytes) return byteStringFromText(s);
    // eslint-disable-next-line no-control-regex
    return /^[\x00-\xff]*$/.test(s) ? (s as ByteString) : this.bad(`bad ${what}`);
  }

  #digest(v: unknown, what: string): Digest {
    try {
      return parseDigest('sha256:' + this.#str(v, what), what);
    } catch {
      return this.bad(`bad ${what}`);
    }
  }
}
