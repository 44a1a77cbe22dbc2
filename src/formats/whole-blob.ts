/**
 * One sequential pass over a whole blob, shared by the two places that read every byte of a layer:
 * opening a plain layer (tar/plain-layer.ts) and the full-read check of a lazily served one
 * (full-pass.ts). The blob is read in 4 MiB reads with one read ahead, and decoded to the tar stream
 * (gzip through node:zlib off the main thread; zstd synchronously in ≤ 1 MiB windows with a turn of
 * the event loop every 8 MiB; an uncompressed tar as it is).
 */
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { RandomAccessBlob } from '../core/blob.js';
import type { ErrorContext } from '../core/errors.js';
import { createDecompressor, ZstdStreamDecoder } from './decompress.js';
import { FormatError } from './errors.js';
import type { Compression } from './model.js';

const WHOLE_BLOB_READ_BYTES = 4 * 1024 * 1024;
/** Uncompressed bytes processed between two turns of the event loop (zstd decodes synchronously). */
const YIELD_BYTES = 8 * 1024 * 1024;

export interface WholeBlobReadOptions {
  readonly signal?: AbortSignal | undefined;
  /** Where to start (a failed pass hashes the rest of the blob from where it stopped). */
  readonly from?: number;
  readonly context?: ErrorContext;
}

/** The blob from `from` to its end in 4 MiB reads, one read ahead. A short blob is DECOMPRESS_FAILED. */
export async function* readWholeBlob(blob: RandomAccessBlob, options: WholeBlobReadOptions = {}): AsyncGenerator<Buffer> {
  const { size } = blob;
  const read = (pos: number): Promise<Buffer> | undefined => {
    if (pos >= size) return undefined;
    const p = blob.read(pos, Math.min(WHOLE_BLOB_READ_BYTES, size - pos), options.signal);
    p.catch(() => undefined); // observed when awaited; avoid an unhandled rejection if the consumer stops early
    return p;
  };
  let pos = options.from ?? 0;
  let next = read(pos);
  while (next) {
    const b = await next;
    if (b.length === 0) throw new FormatError('DECOMPRESS_FAILED', `blob ends at ${pos} of ${size} bytes`, options.context ?? {});
    pos += b.length;
    next = read(pos);
    yield b;
  }
}

/**
 * Decodes `reads` (the blob's bytes in order) and hands the tar stream to `consume`, awaiting it
 * (that is the backpressure). Throws what `consume` threw, or the decoder's error; never the
 * AbortError of a stream that pipeline() destroyed because the consumer failed.
 */
export async function decodeWholeBlob(
  compression: Compression,
  reads: AsyncIterable<Buffer>,
  consume: (tar: Buffer) => void | Promise<void>,
): Promise<void> {
  if (compression === 'none') {
    for await (const b of reads) await consume(b);
  } else if (compression === 'zstd') {
    await decodeZstdInWindows(reads, consume);
  } else {
    let consumerError: unknown;
    try {
      await pipeline(Readable.from(reads, { objectMode: false, highWaterMark: 1 }), createDecompressor(compression), async (src: AsyncIterable<Buffer>) => {
        try {
          for await (const b of src) await consume(b);
        } catch (e) {
          consumerError ??= e;
          throw e;
        }
      });
    } catch (e) {
      throw consumerError ?? e;
    }
  }
}

/**
 * zstd is decoded synchronously in ≤ 1 MiB windows between the (asynchronous) reads; no stream
 * machinery, whose buffering would concatenate (copy) the windows again.
 */
async function decodeZstdInWindows(reads: AsyncIterable<Buffer>, consume: (window: Buffer) => void | Promise<void>): Promise<void> {
  const dec = new ZstdStreamDecoder();
  let sinceYield = 0;
  for await (const b of reads) {
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
}
