/**
 * The LayerRecord payload of a plain layer: a compact JSON array of its RawEntry[] (one object per
 * tar entry, archive order, short keys, Buffers as base64), base64-encoded. Chunk spans are not
 * stored: they follow from the compression, the file's data offset in the tar and the fixed piece
 * size (params.chunkSize), exactly as openPlainLayer cut them. Loading validates every field's type
 * and rebuilds the index with the same options as openPlainLayer; there is no TOC digest to
 * re-verify (the blob digest and diffID were verified by the pass that produced the record).
 */
import { parseDigest, type Digest } from '../../core/digest.js';
import { DEFAULT_LIMITS, type Limits } from '../../core/limits.js';
import { compressionOfFormat } from '../detect.js';
import { FormatError } from '../errors.js';
import type { LayerRecord } from '../layer-reader.js';
import { byteStringFromText } from '../byte-string.js';
import type { ByteString, ChunkRef, Compression, LayerFormat, LayerIndex, RawEntry, RawEntryType } from '../model.js';
import { buildLayerIndex } from '../overlay-view.js';

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
  /** reg: tar offset of the content, whole-file sha256 hex, chunk sha256 hexes. */
  o?: number; d?: string; c?: string[];
}

const PLAIN_FORMATS: ReadonlySet<LayerFormat> = new Set(['tar', 'tar+gzip', 'tar+zstd']);

/** Span of a piece of content at tar offset `tarOffset` (see openPlainLayer for why). */
export function plainSpan(compression: Compression, blobSize: number, tarOffset: number, size: number): ChunkRef['span'] {
  return compression === 'none'
    ? { offset: tarOffset, end: tarOffset + size, innerOffset: 0 }
    : { offset: 0, end: blobSize, innerOffset: tarOffset };
}

/** Limits for buildLayerIndex: compressed plain spans run from the blob start, so the span cap is lifted. */
export function plainBuildLimits(limits: Limits, blobSize: number): Limits {
  return { ...limits, maxCompressedSpanBytes: Math.max(limits.maxCompressedSpanBytes, blobSize) };
}

export function encodePlainPayload(raw: readonly RawEntry[], dataOffsets: readonly number[]): string {
  const out: CompactEntry[] = raw.map((e, i) => {
    const c: CompactEntry = { n: e.name, t: e.type, m: e.mode, u: e.uid, g: e.gid, s: e.size, ts: e.mtimeSec, tn: e.mtimeNsec };
    if (e.linkName !== undefined) c.l = e.linkName;
    if (e.devMajor || e.devMinor) [c.dj, c.dn] = [e.devMajor, e.devMinor];
    if (e.xattrs.size) c.x = Object.fromEntries([...e.xattrs].map(([k, v]) => [k, v.toString('base64')]));
    if (e.type === 'reg' && e.size > 0) {
      c.o = dataOffsets[i]!;
      if (e.digest !== undefined) c.d = hexOf(e.digest);
      c.c = e.chunks.map((k) => hexOf(k.digest));
    }
    return c;
  });
  return Buffer.from(JSON.stringify(out)).toString('base64');
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
    { duplicates: 'replace', hideEstargzArtefacts: false, limits: plainBuildLimits(limits, blobSize) },
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
      list = JSON.parse(Buffer.from(this.#record.payload, 'base64').toString('utf8'));
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
    if (list.length !== Math.ceil(size / cut.chunkSize)) this.bad('chunk count does not match the size');
    const chunks = list.map((h, i): ChunkRef => {
      const fileOffset = i * cut.chunkSize;
      const n = Math.min(cut.chunkSize, size - fileOffset);
      return { digest: this.#digest(h, 'chunk digest'), fileOffset, size: n, span: plainSpan(cut.compression, cut.blobSize, off + fileOffset, n) };
    });
    return { chunks, ...(c['d'] !== undefined ? { digest: this.#digest(c['d'], 'file digest') } : {}) };
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
