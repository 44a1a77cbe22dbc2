/**
 * Synchronous, exactly-bounded zstd decoding for zstd:chunked metadata (the TOC and tar-split).
 *
 * Both are announced with their uncompressed length (footer / position annotation), so we allocate
 * exactly that, decode into it in windows, and fail as soon as the data wants one byte more
 * (DECOMPRESS_LIMIT) or ends early (DECOMPRESS_FAILED). A bomb therefore costs at most `expected`
 * bytes of memory and stops after one extra output byte, not after inflating the whole frame.
 *
 * Why not decompress.ts: its stream decoder is asynchronous and stops at a prefix without telling
 * whether more output would follow; record loading (LayerRecordLoader) is synchronous and must
 * reject a TOC longer than announced. This is the one other user of zstd-napi (its raw binding).
 */
import { createRequire } from 'node:module';
import type * as ZstdBinding from 'zstd-napi/binding.js';
import type { ErrorContext } from '../../core/errors.js';
import { FormatError } from '../errors.js';

const binding = createRequire(import.meta.url)('zstd-napi/binding') as typeof ZstdBinding;

/** Output window per native call: bounds the work done between two limit checks. */
const WINDOW = 1 << 20;

export function decodeZstdExact(src: Uint8Array, expected: number, what: string, context: ErrorContext = {}): Buffer {
  if (!Number.isSafeInteger(expected) || expected < 0) {
    throw new FormatError('DECOMPRESS_LIMIT', `${what}: bad uncompressed length ${expected}`, context);
  }
  const out = Buffer.allocUnsafe(expected);
  const scratch = Buffer.allocUnsafe(1);
  const dctx = new binding.DCtx();
  let outPos = 0;
  let inPos = 0;
  // Non-zero while a frame is open (ZSTD_decompressStream returns 0 only at a frame's end).
  let pending = 0;
  while (inPos < src.length || pending !== 0) {
    const full = outPos >= expected;
    const dst = full ? scratch : out.subarray(outPos, Math.min(expected, outPos + WINDOW));
    let produced: number;
    let consumed: number;
    try {
      [pending, produced, consumed] = dctx.decompressStream(dst, src.subarray(inPos));
    } catch (e) {
      throw new FormatError('DECOMPRESS_FAILED', `${what}: corrupt zstd data: ${(e as Error).message}`, context, { cause: e });
    }
    if (full && produced > 0) {
      throw new FormatError('DECOMPRESS_LIMIT', `${what}: decompresses to more than the announced ${expected} bytes`, context);
    }
    outPos += produced;
    inPos += consumed;
    if (produced === 0 && consumed === 0) {
      // With output space available zstd always makes progress unless the input ran out mid-frame.
      throw new FormatError('DECOMPRESS_FAILED', `${what}: zstd data ends inside a frame`, context);
    }
  }
  if (outPos !== expected) {
    throw new FormatError('DECOMPRESS_FAILED', `${what}: decompresses to ${outPos} bytes, announced ${expected}`, context);
  }
  return out;
}
