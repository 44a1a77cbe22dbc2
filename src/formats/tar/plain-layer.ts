/**
 * Plain layers (tar, tar+gzip, tar+zstd; docs/formats.md §5): no TOC, so nothing can be trusted before
 * the whole blob has been read. openPlainLayer makes ONE sequential pass over the blob (4 MiB reads,
 * one read ahead), and in that pass:
 *   - hashes the compressed bytes (blob digest; checked against descriptor.digest/size),
 *   - decompresses (gzip members / zstd frames, all of them) and hashes the tar (diffID),
 *   - scans the tar headers (tar-scanner.ts) and cuts every regular file into ≤ 1 MiB pieces, each
 *     hashed into a ChunkRef and handed to options.onPlainChunk (awaited: that is the backpressure).
 * Only after the last byte are the digests compared (BLOB_DIGEST_MISMATCH, DIFFID_MISMATCH) and the
 * index built, so a caller that staged the pieces commits them only if openPlainLayer resolves.
 *
 * Spans: uncompressed tars point straight at the content ({offset: tarOffset, end: +size}). In a
 * gzip/zstd stream we record no restart points, so a piece can only be re-read by decoding from the
 * blob start: {offset: 0, end: blobSize, innerOffset: tarOffset}. That is correct but costs O(offset);
 * consumers are expected to keep the pieces they received (the store's cache, the CLI's staging) and
 * never re-read compressed plain layers. Such spans exceed Limits.maxCompressedSpanBytes, so the index
 * is built with that one limit raised to the blob size (plainBuildLimits).
 *
 * Bomb guard: the uncompressed stream may be at most options.maxUncompressedBytes, by default
 * 1 GiB + 128 × the blob size (gzip/zstd of ordinary file trees stays far below 10×; the allowance
 * covers zero-filled images). Past it the pass stops with DECOMPRESS_LIMIT.
 */
import type { RandomAccessBlob } from '../../core/blob.js';
import { digestAlgorithm, DigestHasher, sha256Of, type Digest } from '../../core/digest.js';
import { LazyAlsError, type ErrorContext } from '../../core/errors.js';
import { DEFAULT_LIMITS, type Limits } from '../../core/limits.js';
import { compressionOfFormat } from '../detect.js';
import { FormatError } from '../errors.js';
import { decodeWholeBlob, readWholeBlob } from '../whole-blob.js';
import type { LayerRecord, OpenedLayer, OpenLayerOptions } from '../layer-reader.js';
import type { ChunkRef, Compression, LayerFormat, RawEntry } from '../model.js';
import { buildLayerIndex, normalizeEntryPath } from '../overlay-view.js';
import {
  encodePlainPayload, plainBuildLimits, plainSpan, PLAIN_CHUNK_BYTES, PLAIN_NAMES_AS_BYTES, sparseChunk, sparsePieces, UNADDRESSED_DIGEST, type SparsePiece,
} from './plain-record.js';
import { TarScanner, type ScannedEntry, type SparseSegment } from './tar-scanner.js';
import { isZstdMagic } from '../constants.js';
import { PAYLOAD_GZIP } from '../record-payload.js';

const GiB = 1024 * 1024 * 1024;

export interface PlainLayerOptions extends OpenLayerOptions {
  /** Bomb guard: largest uncompressed tar accepted (default 1 GiB + 128 × blob size). */
  readonly maxUncompressedBytes?: number;
}

function defaultMaxUncompressed(blobSize: number): number {
  return GiB + 128 * blobSize;
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

interface OpenFile {
  readonly raw: Mutable<RawEntry> & { chunks: ChunkRef[] };
  readonly path: string;
  readonly dataOffset: number;
  readonly hasher: DigestHasher | undefined;
  /** Assembly buffer of the current piece, only when it straddles two pushed buffers. */
  piece: Buffer | undefined;
  fill: number;
  fileOffset: number;
  /** A GNU sparse file: its pieces (holes and stored data) and the next one to emit. */
  readonly sparse?: { readonly pieces: readonly SparsePiece[]; next: number };
}

/** Which plain format a blob is, from the forced format, the media type, then the magic bytes. */
function plainFormatOf(head: Buffer, options: OpenLayerOptions): LayerFormat {
  const f = options.format;
  if (f === 'tar' || f === 'tar+gzip' || f === 'tar+zstd') return f;
  if (head[0] === 0x1f && head[1] === 0x8b) return 'tar+gzip';
  if (head.length >= 4 && isZstdMagic(head.readUInt32LE(0))) return 'tar+zstd';
  return 'tar';
}

export async function openPlainLayer(blob: RandomAccessBlob, options: PlainLayerOptions = {}): Promise<OpenedLayer> {
  const desc = options.descriptor;
  if (desc?.size !== undefined && desc.size !== blob.size) {
    throw new FormatError('BLOB_DIGEST_MISMATCH', `blob is ${blob.size} bytes, descriptor says ${desc.size}`, { blob: desc.digest ?? blob.name });
  }
  const format = plainFormatOf(blob.size >= 4 ? await blob.read(0, 4, options.signal) : Buffer.alloc(0), options);
  const pass = new PlainPass(blob, format, options);
  await pass.run();
  return pass.finish();
}

/** Hashes of one pass: the blob's, and the tar's (diffID) unless the blob is the tar and both use one algorithm. */
class PassHashes {
  readonly blob: DigestHasher;
  readonly diff: DigestHasher;
  /** An uncompressed blob IS the tar: hash it once when both digests use the same algorithm. */
  readonly same: boolean;
  /** Blob bytes hashed so far (a failed pass hashes the rest to name a corrupt blob precisely). */
  blobBytes = 0;

  constructor(compression: Compression, blobDigest: Digest | undefined, diffId: Digest | undefined) {
    this.blob = blobDigest !== undefined ? DigestHasher.for(blobDigest) : new DigestHasher();
    this.diff = diffId !== undefined ? DigestHasher.for(diffId) : new DigestHasher();
    const algorithm = (d: Digest | undefined): string => (d !== undefined ? digestAlgorithm(d) : 'sha256');
    this.same = compression === 'none' && algorithm(blobDigest) === algorithm(diffId);
  }
}

/** The one sequential pass over a plain blob: read → hash → decompress → scan tar → cut files into pieces. */
class PlainPass {
  readonly #blob: RandomAccessBlob;
  readonly #format: LayerFormat;
  readonly #compression: Compression;
  readonly #options: PlainLayerOptions;
  readonly #limits: Limits;
  readonly #ctx: ErrorContext;
  readonly #maxOut: number;
  readonly #hashes: PassHashes;
  readonly #scanner: TarScanner;
  readonly #raw: RawEntry[] = [];
  readonly #dataOffsets: number[] = [];
  /** Sparse maps by entry index (for the record). */
  readonly #sparse = new Map<number, readonly SparseSegment[]>();
  /** Zero bytes of sparse files' holes: served, never stored, so bounded with the tar (bomb guard). */
  #holes = 0;
  /** Uncompressed (tar) bytes seen. */
  #out = 0;
  /** Pieces and files hashed into content addresses (not when the caller keeps the pieces: unaddressedPieces). */
  readonly #address: boolean;
  /** The regular file whose content the scanner is emitting. */
  #cur: OpenFile | undefined;

  constructor(blob: RandomAccessBlob, format: LayerFormat, options: PlainLayerOptions) {
    this.#blob = blob;
    this.#format = format;
    this.#compression = compressionOfFormat(format);
    this.#options = options;
    this.#limits = options.limits ?? DEFAULT_LIMITS;
    this.#ctx = { blob: options.descriptor?.digest ?? blob.name };
    this.#maxOut = options.maxUncompressedBytes ?? defaultMaxUncompressed(blob.size);
    this.#hashes = new PassHashes(this.#compression, options.descriptor?.digest, options.diffId);
    this.#scanner = new TarScanner(this.#limits, blob.name);
    this.#address = options.unaddressedPieces !== true;
  }

  async run(): Promise<void> {
    try {
      await decodeWholeBlob(this.#compression, this.#reads(), (b) => this.#consume(b));
      this.#scanner.finish();
    } catch (e) {
      throw await this.#explain(e);
    }
    if (this.#cur) throw new FormatError('TAR_INVALID', 'archive ends inside a file', { ...this.#ctx, entry: this.#cur.path });
  }

  /** Digest checks, then the index and the record; only reached after the last byte. */
  finish(): OpenedLayer {
    const { descriptor: desc, diffId: wantDiffId } = this.#options;
    const blob = this.#blob;
    const blobDigest = this.#hashes.blob.digest();
    if (desc?.digest !== undefined && blobDigest !== desc.digest) {
      throw new FormatError('BLOB_DIGEST_MISMATCH', `blob hashes to ${blobDigest}, expected ${desc.digest}`, this.#ctx);
    }
    const diffId: Digest = this.#hashes.same ? blobDigest : this.#hashes.diff.digest();
    if (wantDiffId !== undefined && diffId !== wantDiffId) {
      throw new FormatError('DIFFID_MISMATCH', `uncompressed layer hashes to ${diffId}, expected diffID ${wantDiffId}`, this.#ctx);
    }
    const format = this.#format;
    const compression = this.#compression;
    const index = buildLayerIndex(
      this.#raw,
      { format, compression, blobSize: blob.size, blobDigest, diffId, uncompressedSize: this.#out, blobName: blob.name },
      { hideEstargzArtefacts: false, limits: plainBuildLimits(this.#limits, blob.size) },
    );
    const ctx = this.#ctx;
    // Extract opens with unaddressed pieces and never asks for a record: it skips the encoding. The
    // record is built here, not in a getter, so that nothing keeps the raw entries alive after the
    // open (a getter closing over them kept ~600 bytes per entry with the index).
    if (!this.#address) {
      return {
        index,
        get record(): LayerRecord {
          throw new FormatError('FORMAT_CONFLICT', 'a layer opened with unaddressed pieces has no record', ctx);
        },
      };
    }
    const record: LayerRecord = {
      version: 1,
      format,
      blobSize: blob.size,
      blobDigest,
      diffId,
      uncompressedSize: this.#out,
      params: { chunkSize: PLAIN_CHUNK_BYTES, names: PLAIN_NAMES_AS_BYTES, [PAYLOAD_GZIP]: 1 },
      payload: encodePlainPayload(this.#raw, this.#dataOffsets, this.#sparse),
    };
    return { index, record };
  }

  /** The blob's reads, each hashed into the blob digest on its way to the decoder. */
  async *#reads(): AsyncGenerator<Buffer> {
    for await (const b of readWholeBlob(this.#blob, { signal: this.#options.signal, context: this.#ctx })) {
      this.#hashes.blob.update(b);
      this.#hashes.blobBytes += b.length;
      yield b;
    }
  }

  /** A pass that failed: a corrupt blob usually fails decoding first; when we know its digest, say so precisely. */
  async #explain(e: unknown): Promise<unknown> {
    this.#options.signal?.throwIfAborted();
    const expected = this.#options.descriptor?.digest;
    if (expected !== undefined && !(e instanceof LazyAlsError && e.code === 'BLOB_RANGE')) {
      const actual = await finishHash(this.#blob, this.#hashes.blob, this.#hashes.blobBytes, this.#options.signal).catch(() => undefined);
      if (actual !== undefined && actual !== expected) {
        return new FormatError('BLOB_DIGEST_MISMATCH', `blob hashes to ${actual}, expected ${expected}`, this.#ctx, { cause: e });
      }
    }
    if (e instanceof LazyAlsError) return e;
    const message = `corrupt ${this.#compression} data: ${(e as Error).message ?? String(e)}`;
    return new FormatError('DECOMPRESS_FAILED', message, this.#ctx, { cause: e });
  }

  /** One buffer of the tar stream: bomb guard, diffID hash, then the scanner's entries and file data. */
  async #consume(b: Buffer): Promise<void> {
    this.#out += b.length;
    if (this.#out > this.#maxOut) {
      throw new FormatError('DECOMPRESS_LIMIT', `uncompressed layer exceeds ${this.#maxOut} bytes (bomb guard)`, this.#ctx);
    }
    if (!this.#hashes.same) this.#hashes.diff.update(b);
    for (const ev of this.#scanner.push(b)) {
      if (ev.kind === 'entry') this.#onEntry(ev.entry);
      else if (ev.kind === 'data') await this.#cutPieces(ev.data);
    }
  }

  #onEntry(e: ScannedEntry): void {
    const path = normalizeEntryPath(e.name, this.#limits, this.#blob.name);
    const r: OpenFile['raw'] = {
      name: e.name, type: e.type, mode: e.mode, uid: e.uid, gid: e.gid, size: e.size,
      mtimeSec: e.mtimeSec, mtimeNsec: e.mtimeNsec, devMajor: e.devMajor, devMinor: e.devMinor,
      xattrs: e.xattrs, chunks: [],
      ...(e.linkName !== undefined ? { linkName: e.linkName } : {}),
    };
    this.#raw.push(r);
    this.#dataOffsets.push(e.dataOffset);
    if (e.sparse) {
      this.#openSparse(e, r, path);
      return;
    }
    if (e.type === 'reg' && e.size > 0) {
      this.#cur = {
        raw: r, path, dataOffset: e.dataOffset,
        hasher: this.#address && e.size > PLAIN_CHUNK_BYTES ? new DigestHasher() : undefined,
        piece: undefined, fill: 0, fileOffset: 0,
      };
    }
  }

  /** A GNU sparse file: its holes become zero chunks (never fetched), its stored segments pieces as usual. */
  #openSparse(e: ScannedEntry, r: OpenFile['raw'], path: string): void {
    const stored = e.sparse!.reduce((n, g) => n + g.length, 0);
    this.#holes += e.size - stored;
    if (this.#out + this.#holes > this.#maxOut) {
      throw new FormatError('DECOMPRESS_LIMIT', `sparse files' holes take the layer past ${this.#maxOut} bytes (bomb guard)`, { ...this.#ctx, entry: path });
    }
    this.#sparse.set(this.#raw.length - 1, e.sparse!);
    const f: OpenFile = {
      raw: r, path, dataOffset: e.dataOffset, hasher: undefined, piece: undefined, fill: 0, fileOffset: 0,
      sparse: { pieces: sparsePieces(e.size, e.sparse!), next: 0 },
    };
    this.#cur = f;
    this.#sparseHoles(f);
  }

  /** Emit the holes up to the next stored piece; close the file after its last piece. */
  #sparseHoles(f: OpenFile): void {
    const sp = f.sparse!;
    while (sp.next < sp.pieces.length && sp.pieces[sp.next]!.stored === undefined) {
      const p = sp.pieces[sp.next++]!;
      f.raw.chunks.push(sparseChunk(p, undefined, this.#compression, this.#blob.size, f.dataOffset));
    }
    if (sp.next === sp.pieces.length) this.#cur = undefined;
  }

  /**
   * Pieces are handed out as sub-arrays of the pushed buffer when they lie within it (every buffer
   * pushed here is freshly allocated by the read or the decoder and never reused), and assembled in a
   * buffer of their own only when they straddle two pushes.
   */
  async #cutPieces(d: Buffer): Promise<void> {
    let p = 0;
    while (p < d.length) {
      const f = this.#cur!;
      const want = f.sparse ? f.sparse.pieces[f.sparse.next]!.size : Math.min(PLAIN_CHUNK_BYTES, f.raw.size - f.fileOffset);
      if (f.fill === 0 && d.length - p >= want) {
        await this.#emitPiece(f, d.subarray(p, p + want));
        p += want;
        continue;
      }
      // in the stream's kind of memory: pieces of shared reads stay shareable (extract's workers take them uncopied)
      f.piece ??= d.buffer instanceof SharedArrayBuffer ? Buffer.from(new SharedArrayBuffer(want)) : Buffer.allocUnsafe(want);
      const n = Math.min(d.length - p, want - f.fill);
      d.copy(f.piece, f.fill, p, p + n);
      f.fill += n;
      p += n;
      if (f.fill === want) await this.#emitPiece(f, f.piece);
    }
  }

  async #emitPiece(f: OpenFile, data: Buffer): Promise<void> {
    if (f.sparse) {
      const chunk = sparseChunk(f.sparse.pieces[f.sparse.next++]!, this.#pieceDigest(data), this.#compression, this.#blob.size, f.dataOffset);
      f.raw.chunks.push(chunk);
      f.fill = 0;
      f.piece = undefined;
      if (this.#options.onPlainChunk) await this.#options.onPlainChunk(chunk, data, f.path);
      this.#sparseHoles(f);
      return;
    }
    const chunk: ChunkRef = {
      digest: this.#pieceDigest(data),
      fileOffset: f.fileOffset,
      size: data.length,
      span: plainSpan(this.#compression, this.#blob.size, f.dataOffset + f.fileOffset, data.length),
    };
    f.raw.chunks.push(chunk);
    f.hasher?.update(data);
    f.fileOffset += data.length;
    f.fill = 0;
    f.piece = undefined;
    if (this.#options.onPlainChunk) await this.#options.onPlainChunk(chunk, data, f.path);
    if (f.fileOffset === f.raw.size) {
      if (this.#address) f.raw.digest = f.hasher ? f.hasher.digest() : chunk.digest;
      this.#cur = undefined;
    }
  }

  #pieceDigest(data: Buffer): Digest {
    return this.#address ? sha256Of(data) : UNADDRESSED_DIGEST;
  }
}

async function finishHash(blob: RandomAccessBlob, h: DigestHasher, from: number, signal?: AbortSignal): Promise<Digest> {
  for await (const b of readWholeBlob(blob, { signal, from })) h.update(b);
  return h.digest();
}
