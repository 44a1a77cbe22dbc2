/**
 * Decompression with a bound on memory AND work: we decode only as many bytes as a chunk needs and
 * stop, so a member or frame that inflates to gigabytes (a bomb, or a lying but authentic TOC) costs
 * at most about `need` bytes of output and the input consumed to produce it.
 *
 * gzip runs on node:zlib (libuv threadpool), fed in small slices so that stopping early really stops.
 * zstd uses zstd-napi's raw streaming context (this file is the only import of zstd-napi), decoding
 * into bounded output windows; it skips skippable frames and continues across concatenated frames
 * like `zstd -d`.
 */
import { createGunzip, type ZlibOptions } from 'node:zlib';
import { createRequire } from 'node:module';
import type { Transform } from 'node:stream';
import { DecompressStream } from 'zstd-napi';
import type * as ZstdBinding from 'zstd-napi/binding.js';
import type { ErrorContext } from '../core/errors.js';
import { FormatError } from './errors.js';
import type { Compression } from './model.js';

const zstdBinding = createRequire(import.meta.url)('zstd-napi/binding') as typeof ZstdBinding;

/** Output window per native zstd call: bounds the work done between two checks. */
const ZSTD_WINDOW = 1 << 20;
/** Input slice fed to zlib at a time, so a bomb is not inflated past the point we stop. */
const GZIP_SLICE = 64 * 1024;

/** A streaming decompressor for whole-blob passes (plain layers). */
export function createDecompressor(compression: Exclude<Compression, 'none'>): Transform {
  // Object mode on the readable side: each 256 KiB output chunk is handed over as it is, instead of
  // read() concatenating (copying) everything buffered into one new buffer.
  if (compression === 'gzip') return createGunzip({ chunkSize: 256 * 1024, readableObjectMode: true } as ZlibOptions);
  return new DecompressStream() as unknown as Transform;
}

/**
 * Whole-blob zstd decoding for plain layers without a stream: `decode(input)` yields the output in
 * windows of ≤ 1 MiB, each a buffer of its own (never reused, so callers may keep sub-arrays), and
 * decodes the next window only when the caller asks for it — so a caller that stops (bomb guard)
 * stops the work too. Skippable frames are skipped and concatenated frames continue, like `zstd -d`.
 */
export class ZstdStreamDecoder {
  readonly #dctx = new zstdBinding.DCtx();
  #inFrame = false;
  #spare: Buffer | undefined;

  *decode(src: Buffer): Generator<Buffer> {
    let inPos = 0;
    for (;;) {
      const out = this.#spare ?? Buffer.allocUnsafe(ZSTD_WINDOW);
      this.#spare = undefined;
      let ret: number;
      let produced: number;
      let consumed: number;
      try {
        [ret, produced, consumed] = this.#dctx.decompressStream(out, src.subarray(inPos));
      } catch (e) {
        throw new FormatError('DECOMPRESS_FAILED', `corrupt zstd data: ${(e as Error).message}`, {}, { cause: e });
      }
      inPos += consumed;
      this.#inFrame = ret !== 0;
      if (produced >= ZSTD_WINDOW / 4) {
        yield out.subarray(0, produced);
      } else {
        // A small tail: hand out a right-sized copy and keep the big window for the next call.
        this.#spare = out;
        if (produced > 0) yield Buffer.from(out.subarray(0, produced));
      }
      if (inPos >= src.length && produced < ZSTD_WINDOW) return;
    }
  }

  /** End of input: throws DECOMPRESS_FAILED if it stopped inside a frame. */
  finish(): void {
    if (this.#inFrame) throw new FormatError('DECOMPRESS_FAILED', 'zstd data ends inside a frame');
  }
}

/**
 * Decode `data` (a span starting at a member/frame boundary) and return exactly its first `need`
 * uncompressed bytes. Throws DECOMPRESS_FAILED if the data is corrupt or ends before `need` bytes.
 */
export function decodePrefix(compression: Compression, data: Buffer, need: number, context: ErrorContext = {}): Promise<Buffer> {
  if (compression === 'none') {
    if (data.length < need) {
      return Promise.reject(new FormatError('DECOMPRESS_FAILED', `span has ${data.length} bytes, need ${need}`, context));
    }
    return Promise.resolve(data.subarray(0, need));
  }
  if (compression === 'zstd') {
    try {
      return Promise.resolve(decodeZstdPrefix(data, need, context));
    } catch (e) {
      return Promise.reject(e);
    }
  }
  return gunzipPrefix(data, need, context);
}

/**
 * Decode `data` (starting at a member/frame boundary, concatenated members allowed) up to its end or
 * up to `max` bytes, whichever comes first: for regions whose uncompressed length is not declared
 * anywhere (the tar headers between two eStargz payloads), bounded by what the caller allows.
 * Throws DECOMPRESS_FAILED only for corrupt data.
 */
export async function decodeAtMost(compression: Compression, data: Buffer, max: number, context: ErrorContext = {}): Promise<Buffer> {
  if (compression === 'none') return data.subarray(0, max);
  if (compression === 'zstd') {
    const dec = new ZstdStreamDecoder();
    const parts: Buffer[] = [];
    let n = 0;
    try {
      for (const w of dec.decode(data)) {
        parts.push(w);
        n += w.length;
        if (n >= max) break;
      }
    } catch (e) {
      throw e instanceof FormatError ? new FormatError(e.code, e.message, context, { cause: e }) : e;
    }
    return Buffer.concat(parts).subarray(0, max);
  }
  const parts: Buffer[] = [];
  await gunzipStream(data, max, context, { shortOk: true }, (b) => parts.push(b));
  return Buffer.concat(parts).subarray(0, max);
}

/** A range of the uncompressed stream decoded from a span start: [start, start + length). */
export interface PlainSlice {
  readonly start: number;
  readonly length: number;
}

/**
 * Decode `data` (a span starting at a member/frame boundary) and return a buffer of its own for each
 * requested range of the uncompressed stream. Bytes between and before the ranges are decoded and
 * dropped as they pass, so memory is the sum of the ranges (what the TOC declares for the chunks
 * asked for), not the decoded prefix; decoding stops at the end of the last range. Throws
 * DECOMPRESS_FAILED if the data is corrupt or ends early. `alloc` makes each returned buffer (the
 * decode workers put them in shared memory); with compression 'none' they are views of `data`.
 */
export async function decodeSlices(
  compression: Compression,
  data: Buffer,
  slices: readonly PlainSlice[],
  context: ErrorContext = {},
  alloc: (n: number) => Buffer = Buffer.allocUnsafe,
): Promise<Buffer[]> {
  let need = 0;
  for (const s of slices) need = Math.max(need, s.start + s.length);
  if (compression === 'none') {
    if (data.length < need) throw new FormatError('DECOMPRESS_FAILED', `span has ${data.length} bytes, need ${need}`, context);
    return slices.map((s) => data.subarray(s.start, s.start + s.length));
  }
  // Distinct ranges in stream order; a partial overlap (no format produces one) takes the slow path.
  const order = [...new Map(slices.map((s) => [`${s.start}:${s.length}`, s])).values()].sort((a, b) => a.start - b.start);
  const overlapping = order.some((s, i) => i > 0 && s.start < order[i - 1]!.start + order[i - 1]!.length);
  if (overlapping) {
    const lo = order[0]!.start;
    const all = await decodeSlices(compression, data, [{ start: lo, length: need - lo }], context);
    return slices.map((s) => {
      const b = alloc(s.length);
      all[0]!.copy(b, 0, s.start - lo, s.start - lo + s.length);
      return b;
    });
  }
  const bufs = new Map<string, Buffer>(order.map((s) => [`${s.start}:${s.length}`, alloc(s.length)]));
  const targets = order.map((s) => ({ start: s.start, end: s.start + s.length, buf: bufs.get(`${s.start}:${s.length}`)! }));
  if (compression === 'zstd') decodeZstdInto(data, targets, need, context);
  else await gunzipInto(data, targets, need, context);
  return slices.map((s) => bufs.get(`${s.start}:${s.length}`)!);
}

interface Target {
  readonly start: number;
  readonly end: number;
  readonly buf: Buffer;
}

/** zstd straight into the targets; the gaps go through a scratch window and are dropped. */
function decodeZstdInto(src: Uint8Array, targets: readonly Target[], need: number, context: ErrorContext): void {
  const dctx = freshDctx();
  let scratch: Buffer | undefined;
  let pos = 0;
  let inPos = 0;
  let t = 0;
  while (pos < need) {
    while (targets[t]!.end <= pos) t++;
    const cur = targets[t]!;
    let dst: Buffer;
    if (pos >= cur.start) {
      dst = cur.buf.subarray(pos - cur.start, Math.min(cur.end, pos + ZSTD_WINDOW) - cur.start);
    } else {
      scratch ??= Buffer.allocUnsafe(ZSTD_WINDOW);
      dst = scratch.subarray(0, Math.min(ZSTD_WINDOW, cur.start - pos));
    }
    if (inPos >= src.length) throw new FormatError('DECOMPRESS_FAILED', `zstd data ends after ${pos} of ${need} bytes`, context);
    let produced: number;
    let consumed: number;
    try {
      [, produced, consumed] = dctx.decompressStream(dst, src.subarray(inPos));
    } catch (e) {
      throw new FormatError('DECOMPRESS_FAILED', `corrupt zstd data: ${(e as Error).message}`, context, { cause: e });
    }
    if (produced === 0 && consumed === 0) {
      throw new FormatError('DECOMPRESS_FAILED', `zstd data ends inside a frame after ${pos} of ${need} bytes`, context);
    }
    pos += produced;
    inPos += consumed;
  }
}

/** gzip through node:zlib, copying the parts of each output piece that fall in a target. */
function gunzipInto(data: Buffer, targets: readonly Target[], need: number, context: ErrorContext): Promise<number> {
  let t = 0;
  return gunzipStream(data, need, context, { shortOk: false }, (b, pos) => {
    const bEnd = pos + b.length;
    while (t < targets.length && targets[t]!.start < bEnd) {
      const tg = targets[t]!;
      const from = Math.max(tg.start, pos);
      const to = Math.min(tg.end, bEnd);
      if (to > from) b.copy(tg.buf, from - tg.start, from - pos, to - pos);
      if (tg.end <= bEnd) t++;
      else break;
    }
  });
}

/**
 * Run `data` through gunzip, handing each output piece to `sink` with its offset in the uncompressed
 * stream, and stop as soon as `need` bytes have come out (the rest is never inflated). Data that ends
 * before `need` bytes is an error unless `shortOk`; corrupt data is an error unless it comes after
 * the `need` bytes. Resolves with the number of bytes handed out.
 */
function gunzipStream(
  data: Buffer,
  need: number,
  context: ErrorContext,
  o: { readonly shortOk: boolean },
  sink: (b: Buffer, pos: number) => void,
): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    let pos = 0;
    let settled = false;
    const d = createGunzip({ chunkSize: 64 * 1024 });
    const done = (err?: unknown): void => {
      if (settled) return;
      settled = true;
      d.removeAllListeners('data');
      d.destroy();
      if (pos >= need) resolve(pos);
      else if (err !== undefined) {
        reject(new FormatError('DECOMPRESS_FAILED', `corrupt gzip data: ${(err as Error).message ?? err}`, context, { cause: err }));
      } else if (o.shortOk) resolve(pos);
      else reject(new FormatError('DECOMPRESS_FAILED', `gzip data ends after ${pos} of ${need} bytes`, context));
    };
    d.on('data', (b: Buffer) => {
      if (settled) return;
      sink(b, pos);
      pos += b.length;
      if (pos >= need) done();
    });
    d.on('error', (e) => done(e));
    d.on('end', () => done());
    if (need === 0) return done();
    feedInSlices(d, data, () => settled);
  });
}

/**
 * One decompression context for the synchronous decoders below (they cannot interleave): a fresh
 * DCtx per chunk costs an allocation of its window buffers each time, and the native memory is only
 * reclaimed by GC, which then dominates a walk over tens of thousands of small chunks.
 */
let sharedDctx: InstanceType<typeof zstdBinding.DCtx> | undefined;
/**
 * Feed `data` to a gunzip stream slice by slice, waiting for zlib to take each one, and stop as soon
 * as the caller has what it needs (`stopped`): a bomb is never inflated past the bytes asked for.
 */
function feedInSlices(d: Transform, data: Buffer, stopped: () => boolean): void {
  let pos = 0;
  const feed = (): void => {
    while (!stopped() && pos < data.length) {
      const slice = data.subarray(pos, pos + GZIP_SLICE);
      pos += slice.length;
      if (!d.write(slice)) {
        d.once('drain', feed);
        return;
      }
    }
    if (!stopped() && pos >= data.length) d.end();
  };
  feed();
}

function freshDctx(): InstanceType<typeof zstdBinding.DCtx> {
  if (sharedDctx === undefined) sharedDctx = new zstdBinding.DCtx();
  else sharedDctx.reset(zstdBinding.ResetDirective.sessionOnly);
  return sharedDctx;
}

/** The first `need` bytes: the one-range case of decodeZstdInto. */
function decodeZstdPrefix(src: Uint8Array, need: number, context: ErrorContext): Buffer {
  const out = Buffer.allocUnsafe(need);
  decodeZstdInto(src, [{ start: 0, end: need, buf: out }], need, context);
  return out;
}

/**
 * Exactly `expected` bytes from zstd `src`, failing if the data decodes to more (DECOMPRESS_LIMIT) or
 * less (DECOMPRESS_FAILED). Synchronous: used for TOCs and tar-splits whose length is announced.
 */
export function decodeZstdExact(src: Uint8Array, expected: number, what: string, context: ErrorContext = {}): Buffer {
  if (!Number.isSafeInteger(expected) || expected < 0) {
    throw new FormatError('DECOMPRESS_LIMIT', `${what}: bad uncompressed length ${expected}`, context);
  }
  const out = Buffer.allocUnsafe(expected);
  const scratch = Buffer.allocUnsafe(1);
  const dctx = freshDctx();
  let outPos = 0;
  let inPos = 0;
  // Non-zero while a frame is open (ZSTD_decompressStream returns 0 only at a frame's end).
  let pending = 0;
  while (inPos < src.length || pending !== 0) {
    const full = outPos >= expected;
    const dst = full ? scratch : out.subarray(outPos, Math.min(expected, outPos + ZSTD_WINDOW));
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

/** The first `need` bytes: the one-range case of gunzipInto. */
async function gunzipPrefix(data: Buffer, need: number, context: ErrorContext): Promise<Buffer> {
  const out = Buffer.allocUnsafe(need);
  await gunzipInto(data, [{ start: 0, end: need, buf: out }], need, context);
  return out;
}
