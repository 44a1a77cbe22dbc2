/**
 * The only way to get file content out of a layer: fetch the compressed span of each chunk, decode
 * just enough of it, and check the bytes against the chunk's digest before returning them. There is
 * no unverified path. Chunks that share a span start (eStargz innerOffset) are decoded once.
 */
import { readRanges, type ByteRange, type RandomAccessBlob } from '../core/blob.js';
import { digestAlgorithm, DigestHasher, type Digest } from '../core/digest.js';
import type { ErrorContext } from '../core/errors.js';
import { alreadyVerified, type VerifiedBytes } from '../core/verified.js';
import { FormatError } from './errors.js';
import { inProcessDecoder, type ChunkDecoder } from './chunk-decoder.js';
import type { ChunkRef, Compression } from './model.js';

export interface ChunkRequest {
  readonly chunk: ChunkRef;
  /** Path of the file the chunk belongs to (for error messages and logs). */
  readonly entry?: string;
}

export interface ChunkSourceInfo {
  readonly compression: Compression;
  /** Blob name/digest for error messages. */
  readonly blobName: string;
  /** Where spans are decoded and hashed (default: in process; a ChunkDecoderPool moves it off the event loop). */
  readonly decoder?: ChunkDecoder;
}

/**
 * A hole chunk (zstd:chunked `zeros`) is `size` zero bytes whose digest the TOC records. sha256 of n
 * zero bytes depends on n alone, so each size is hashed once (a memo of a pure function, bounded to
 * a few sizes) and later reads of a hole only compare digests: a 16 MiB hole read 128 KiB at a time
 * costs no hashing per read.
 */
class ZeroDigests {
  readonly #bySize = new Map<number, Digest>();
  static readonly MAX = 256;

  of(size: number, like: Digest): Digest {
    let d = this.#bySize.get(size);
    if (d === undefined || digestAlgorithm(d) !== digestAlgorithm(like)) {
      d = DigestHasher.for(like).update(Buffer.alloc(size)).digest();
      if (this.#bySize.size >= ZeroDigests.MAX) this.#bySize.delete(this.#bySize.keys().next().value!);
      this.#bySize.set(size, d);
    }
    return d;
  }
}
const zeroDigests = new ZeroDigests();

/** The verified bytes of a hole chunk: fresh zeros (cheap: calloc'd pages), checked by digest only. */
function holeChunk(c: ChunkRef, ctx: ErrorContext): VerifiedBytes {
  const actual = zeroDigests.of(c.size, c.digest);
  if (actual !== c.digest) {
    throw new FormatError('CHUNK_DIGEST_MISMATCH', `hole of ${c.size} zero bytes hashes to ${actual}`, { ...ctx, chunk: c.digest });
  }
  // alreadyVerified: `size` zero bytes hash to `actual`, just compared with the chunk's digest
  return alreadyVerified(Buffer.alloc(c.size));
}

/**
 * Read and verify several chunks of one layer. Returns buffers in request order. Any failure
 * rejects the whole call (callers that want partial results call it per chunk).
 */
export async function readVerifiedChunks(
  blob: RandomAccessBlob,
  info: ChunkSourceInfo,
  requests: readonly ChunkRequest[],
  signal?: AbortSignal,
): Promise<VerifiedBytes[]> {
  const out = new Array<VerifiedBytes>(requests.length);
  // Group by span start: one fetch and one decode per group.
  const groups = new Map<number, { end: number; need: number; members: number[] }>();
  requests.forEach((r, i) => {
    const c = r.chunk;
    if (c.zeros) {
      out[i] = holeChunk(c, ctxOf(info, r));
      return;
    }
    const g = groups.get(c.span.offset);
    const need = c.span.innerOffset + c.size;
    if (g) {
      g.end = Math.max(g.end, c.span.end);
      g.need = Math.max(g.need, need);
      g.members.push(i);
    } else {
      groups.set(c.span.offset, { end: c.span.end, need, members: [i] });
    }
  });
  const starts = [...groups.keys()];
  const ranges: ByteRange[] = starts.map((s) => ({ offset: s, length: groups.get(s)!.end - s }));
  const datas = ranges.length ? await readRanges(blob, ranges, signal) : [];
  const decoder = info.decoder ?? inProcessDecoder;
  const jobs = starts.map((start, gi) => {
    const g = groups.get(start)!;
    const members = g.members.map((i) => {
      const c = requests[i]!.chunk;
      return { innerOffset: c.span.innerOffset, size: c.size, digest: c.digest };
    });
    return { compression: info.compression, data: datas[gi]!, need: g.need, members };
  });
  const contexts = starts.map((start): ErrorContext => {
    const g = groups.get(start)!;
    const first = requests[g.members[0]!]!;
    return { ...ctxOf(info, first), range: [start, g.end], ...(g.members.length === 1 ? { chunk: first.chunk.digest } : {}) };
  });
  const results = jobs.length > 0 ? await decoder.decodeAll(jobs, contexts) : [];
  // Every decode has finished and none of the results is a view of a span (decoders copy out
  // uncompressed members): the spans' memory can be reused for the next fetch.
  if (datas.length > 0) blob.release?.(datas);
  starts.forEach((start, gi) => {
    const res = results[gi]!;
    if (res instanceof Error) throw res;
    groups.get(start)!.members.forEach((i, k) => {
      const r = res[k]!;
      if ('actual' in r) {
        throw new FormatError(
          'CHUNK_DIGEST_MISMATCH',
          `chunk content hashes to ${r.actual}`,
          { ...ctxOf(info, requests[i]!), chunk: requests[i]!.chunk.digest },
        );
      }
      out[i] = r.ok;
    });
  });
  return out;
}

export async function readVerifiedChunk(
  blob: RandomAccessBlob,
  info: ChunkSourceInfo,
  request: ChunkRequest,
  signal?: AbortSignal,
): Promise<VerifiedBytes> {
  const [b] = await readVerifiedChunks(blob, info, [request], signal);
  return b!;
}

function ctxOf(info: ChunkSourceInfo, r: ChunkRequest): ErrorContext {
  return { blob: info.blobName, ...(r.entry !== undefined ? { entry: r.entry } : {}) };
}
