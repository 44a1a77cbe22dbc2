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
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { RandomAccessBlob } from '../../core/blob.js';
import { digestAlgorithm, DigestHasher, sha256Of, type Digest } from '../../core/digest.js';
import { LazyAlsError, type ErrorContext } from '../../core/errors.js';
import { DEFAULT_LIMITS } from '../../core/limits.js';
import { createDecompressor, ZstdStreamDecoder } from '../decompress.js';
import { FormatError } from '../errors.js';
import type { LayerRecord, OpenedLayer, OpenLayerOptions } from '../layer-reader.js';
import type { ChunkRef, Compression, LayerFormat, RawEntry } from '../model.js';
import { buildLayerIndex, normalizeEntryPath } from '../overlay-view.js';
import { encodePlainPayload, plainBuildLimits, plainSpan, PLAIN_CHUNK_BYTES, PLAIN_NAMES_AS_BYTES } from './plain-record.js';
import { TarScanner, type ScannedEntry } from './tar-scanner.js';

const READ_BYTES = 4 * 1024 * 1024;
/** Uncompressed bytes processed between two turns of the event loop (zstd decodes synchronously). */
const YIELD_BYTES = 8 * 1024 * 1024;
const GiB = 1024 * 1024 * 1024;

export interface PlainLayerOptions extends OpenLayerOptions {
  /** Bomb guard: largest uncompressed tar accepted (default 1 GiB + 128 × blob size). */
  readonly maxUncompressedBytes?: number;
}

export function defaultMaxUncompressed(blobSize: number): number {
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
}

/** Which plain format a blob is, from the forced format, the media type, then the magic bytes. */
export function plainFormatOf(head: Buffer, options: OpenLayerOptions): LayerFormat {
  const f = options.format;
  if (f === 'tar' || f === 'tar+gzip' || f === 'tar+zstd') return f;
  if (head[0] === 0x1f && head[1] === 0x8b) return 'tar+gzip';
  if (head.length >= 4 && (head.readUInt32LE(0) === 0xfd2fb528 || (head.readUInt32LE(0) & 0xfffffff0) === 0x184d2a50)) return 'tar+zstd';
  return 'tar';
}

export async function openPlainLayer(blob: RandomAccessBlob, options: PlainLayerOptions = {}): Promise<OpenedLayer> {
  const limits = options.limits ?? DEFAULT_LIMITS;
  const signal = options.signal;
  const desc = options.descriptor;
  const bctx: ErrorContext = { blob: desc?.digest ?? blob.name };
  if (desc?.size !== undefined && desc.size !== blob.size) {
    throw new FormatError('BLOB_DIGEST_MISMATCH', `blob is ${blob.size} bytes, descriptor says ${desc.size}`, bctx);
  }
  const format = plainFormatOf(blob.size >= 4 ? await blob.read(0, 4, signal) : Buffer.alloc(0), options);
  const compression: Compression = format === 'tar+gzip' ? 'gzip' : format === 'tar+zstd' ? 'zstd' : 'none';
  const maxOut = options.maxUncompressedBytes ?? defaultMaxUncompressed(blob.size);

  const blobHasher = desc?.digest !== undefined ? DigestHasher.for(desc.digest) : new DigestHasher();
  const diffHasher = options.diffId !== undefined ? DigestHasher.for(options.diffId) : new DigestHasher();
  // An uncompressed blob IS the tar: hash it once when both digests use the same algorithm.
  const sameHash =
    compression === 'none' &&
    (desc?.digest !== undefined ? digestAlgorithm(desc.digest) : 'sha256') ===
      (options.diffId !== undefined ? digestAlgorithm(options.diffId) : 'sha256');
  const scanner = new TarScanner(limits, blob.name);
  const raw: RawEntry[] = [];
  const dataOffsets: number[] = [];
  let out = 0;
  let cur: OpenFile | undefined;
  let hashedIn = 0;

  const emitPiece = async (f: OpenFile, data: Buffer): Promise<void> => {
    const chunk: ChunkRef = {
      digest: sha256Of(data),
      fileOffset: f.fileOffset,
      size: data.length,
      span: plainSpan(compression, blob.size, f.dataOffset + f.fileOffset, data.length),
    };
    f.raw.chunks.push(chunk);
    f.hasher?.update(data);
    f.fileOffset += data.length;
    f.fill = 0;
    f.piece = undefined;
    if (options.onPlainChunk) await options.onPlainChunk(chunk, data, f.path);
    if (f.fileOffset === f.raw.size) {
      f.raw.digest = f.hasher ? f.hasher.digest() : chunk.digest;
      cur = undefined;
    }
  };

  const onEntry = (e: ScannedEntry): void => {
    const path = normalizeEntryPath(e.name, limits, blob.name);
    const r: OpenFile['raw'] = {
      name: e.name, type: e.type, mode: e.mode, uid: e.uid, gid: e.gid, size: e.size,
      mtimeSec: e.mtimeSec, mtimeNsec: e.mtimeNsec, devMajor: e.devMajor, devMinor: e.devMinor,
      xattrs: e.xattrs, chunks: [],
      ...(e.linkName !== undefined ? { linkName: e.linkName } : {}),
    };
    raw.push(r);
    dataOffsets.push(e.dataOffset);
    if (e.type === 'reg' && e.size > 0) {
      cur = {
        raw: r, path, dataOffset: e.dataOffset,
        hasher: e.size > PLAIN_CHUNK_BYTES ? new DigestHasher() : undefined,
        piece: undefined, fill: 0, fileOffset: 0,
      };
    }
  };

  const consume = async (b: Buffer): Promise<void> => {
    out += b.length;
    if (out > maxOut) {
      throw new FormatError('DECOMPRESS_LIMIT', `uncompressed layer exceeds ${maxOut} bytes (bomb guard)`, bctx);
    }
    if (!sameHash) diffHasher.update(b);
    for (const ev of scanner.push(b)) {
      if (ev.kind === 'entry') onEntry(ev.entry);
      else if (ev.kind === 'data') {
        // Pieces are handed out as sub-arrays of the pushed buffer when they lie within it (every
        // buffer pushed here is freshly allocated by the read or the decoder and never reused), and
        // assembled in a buffer of their own only when they straddle two pushes.
        const d = ev.data;
        let p = 0;
        while (p < d.length) {
          const f = cur!;
          const want = Math.min(PLAIN_CHUNK_BYTES, f.raw.size - f.fileOffset);
          if (f.fill === 0 && d.length - p >= want) {
            await emitPiece(f, d.subarray(p, p + want));
            p += want;
            continue;
          }
          f.piece ??= Buffer.allocUnsafe(want);
          const n = Math.min(d.length - p, want - f.fill);
          d.copy(f.piece, f.fill, p, p + n);
          f.fill += n;
          p += n;
          if (f.fill === want) await emitPiece(f, f.piece);
        }
      }
    }
  };

  async function* pieces(): AsyncGenerator<Buffer> {
    let next: Promise<Buffer> | undefined = blob.size > 0 ? blob.read(0, Math.min(READ_BYTES, blob.size), signal) : undefined;
    let pos = 0;
    while (next) {
      const b = await next;
      const np = pos + b.length;
      next = np < blob.size ? blob.read(np, Math.min(READ_BYTES, blob.size - np), signal) : undefined;
      next?.catch(() => undefined); // observed when awaited; avoid an unhandled rejection if we stop early
      blobHasher.update(b);
      hashedIn = pos = np;
      yield b;
    }
  }

  // pipeline() may reject with the AbortError of a stream it destroyed rather than with the error
  // our consumer threw; keep the consumer's own error, it is the meaningful one.
  let consumerError: unknown;
  try {
    if (compression === 'none') {
      for await (const b of pieces()) await consume(b);
    } else if (compression === 'zstd') {
      // Decoded synchronously in ≤ 1 MiB windows between the (asynchronous) reads; no stream
      // machinery, whose buffering would concatenate (copy) the windows again.
      const dec = new ZstdStreamDecoder();
      let sinceYield = 0;
      for await (const b of pieces()) {
        for (const w of dec.decode(b)) {
          await consume(w);
          sinceYield += w.length;
          if (sinceYield >= YIELD_BYTES) {
            sinceYield = 0;
            await new Promise<void>((r) => setImmediate(r)); // let other I/O in
          }
        }
      }
      dec.finish();
    } else {
      await pipeline(Readable.from(pieces(), { objectMode: false, highWaterMark: 1 }), createDecompressor(compression), async (src: AsyncIterable<Buffer>) => {
        try {
          for await (const b of src) await consume(b);
        } catch (e) {
          consumerError ??= e;
          throw e;
        }
      });
    }
    scanner.finish();
  } catch (e0) {
    const e = consumerError ?? e0;
    signal?.throwIfAborted();
    // A corrupt blob usually fails decoding first; when we know its digest, say so precisely.
    if (desc?.digest !== undefined && !(e instanceof LazyAlsError && e.code === 'BLOB_RANGE')) {
      const actual = await finishHash(blob, blobHasher, hashedIn, signal).catch(() => undefined);
      if (actual !== undefined && actual !== desc.digest) {
        throw new FormatError('BLOB_DIGEST_MISMATCH', `blob hashes to ${actual}, expected ${desc.digest}`, bctx, { cause: e });
      }
    }
    if (e instanceof LazyAlsError) throw e;
    throw new FormatError('DECOMPRESS_FAILED', `corrupt ${compression} data: ${(e as Error).message ?? String(e)}`, bctx, { cause: e });
  }
  if (cur) throw new FormatError('TAR_INVALID', 'archive ends inside a file', { ...bctx, entry: cur.path });

  const blobDigest = blobHasher.digest();
  if (desc?.digest !== undefined && blobDigest !== desc.digest) {
    throw new FormatError('BLOB_DIGEST_MISMATCH', `blob hashes to ${blobDigest}, expected ${desc.digest}`, bctx);
  }
  const diffId: Digest = sameHash ? blobDigest : diffHasher.digest();
  if (options.diffId !== undefined && diffId !== options.diffId) {
    throw new FormatError('DIFFID_MISMATCH', `uncompressed layer hashes to ${diffId}, expected diffID ${options.diffId}`, bctx);
  }
  const index = buildLayerIndex(
    raw,
    { format, compression, blobSize: blob.size, blobDigest, diffId, uncompressedSize: out, blobName: blob.name },
    { duplicates: 'replace', hideEstargzArtefacts: false, limits: plainBuildLimits(limits, blob.size) },
  );
  const record: LayerRecord = {
    version: 1,
    format,
    blobSize: blob.size,
    blobDigest,
    diffId,
    uncompressedSize: out,
    params: { chunkSize: PLAIN_CHUNK_BYTES, names: PLAIN_NAMES_AS_BYTES },
    payload: encodePlainPayload(raw, dataOffsets),
  };
  return { index, record };
}

async function finishHash(blob: RandomAccessBlob, h: DigestHasher, from: number, signal?: AbortSignal): Promise<Digest> {
  for (let pos = from; pos < blob.size; ) {
    const b = await blob.read(pos, Math.min(READ_BYTES, blob.size - pos), signal);
    h.update(b);
    pos += b.length;
  }
  return h.digest();
}
