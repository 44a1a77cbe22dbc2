/**
 * Decode-and-verify of chunk spans in worker threads, so that decompression and sha256 run beside
 * the fetch instead of on the daemon's event loop (which also serves FUSE and parses HTTP).
 *
 * A job is one compressed span (copied into a buffer transferred to the worker: the source's buffer
 * may be shared) and the chunks inside it; the worker decodes just the chunks they need (the same
 * bounded decodeSlices as in-process, with a zstd context and zlib reused per thread), hashes every
 * chunk and sends back each verified chunk as its own transferred ArrayBuffer — or, per chunk, the
 * digest it actually hashed to, or the decode error. The main thread turns those into the same
 * FormatErrors as the in-process path, so callers cannot tell where the work ran.
 *
 * The in-process decoder (inProcessDecoder) is used when no pool is given, and by the pool itself
 * when it cannot start workers from compiled code (running from TypeScript sources under a test
 * runner), so behaviour never depends on it.
 */
import { availableParallelism } from 'node:os';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { DigestHasher, type Digest } from '../core/digest.js';
import type { ErrorContext } from '../core/errors.js';
import { decodeSlices } from './decompress.js';
import { FormatError, type FormatErrorCode } from './errors.js';
import type { Compression } from './model.js';

export interface SpanMember {
  readonly innerOffset: number;
  readonly size: number;
  readonly digest: Digest;
}

export interface SpanJob {
  readonly compression: Compression;
  /** Compressed bytes of the span (from a member/frame boundary). */
  readonly data: Buffer;
  /** Uncompressed bytes needed from the span start (max innerOffset + size). */
  readonly need: number;
  readonly members: readonly SpanMember[];
}

/** Per member: the verified bytes, or the digest the bytes actually hashed to. */
export type MemberResult = { readonly ok: Buffer } | { readonly actual: string };

/** Decodes a span and hashes its members. Rejects with FormatError (DECOMPRESS_*) on bad data. */
export interface ChunkDecoder {
  decode(job: SpanJob, context: ErrorContext): Promise<MemberResult[]>;
  close?(): Promise<void>;
}

/**
 * Decode the span keeping only the members' bytes (what lies before and between them is decoded and
 * dropped: memory is what the TOC declares for the requested chunks, never the decoded prefix), and
 * hash each. With compression 'none' the bytes are views of job.data.
 */
async function decodeAndHash(job: SpanJob, context: ErrorContext): Promise<{ results: Array<{ bytes: Buffer; actual: string }> }> {
  const slices = job.members.map((m) => ({ start: m.innerOffset, length: m.size }));
  const plain = await decodeSlices(job.compression, job.data, slices, context);
  const results = job.members.map((m, i) => {
    const bytes = plain[i]!;
    return { bytes, actual: DigestHasher.for(m.digest).update(bytes).digest() };
  });
  return { results };
}

/** Decode on the calling thread (zstd synchronously, gzip in the libuv pool). */
export const inProcessDecoder: ChunkDecoder = {
  async decode(job, context) {
    const { results } = await decodeAndHash(job, context);
    // Decoded members are buffers of their own; uncompressed ones are views of the span, copied so
    // a cached chunk does not keep its whole span alive.
    const copy = job.compression === 'none';
    return results.map((r, i) => (r.actual === job.members[i]!.digest ? { ok: copy ? Buffer.from(r.bytes) : r.bytes } : { actual: r.actual }));
  },
};

interface WireJob {
  readonly id: number;
  readonly compression: Compression;
  readonly data: ArrayBuffer;
  readonly need: number;
  readonly members: readonly SpanMember[];
}

type WireReply =
  | { readonly id: number; readonly results: ReadonlyArray<{ ok: ArrayBuffer } | { actual: string }> }
  | { readonly id: number; readonly error: { code: string; message: string } };

const WORKER_FLAG = 'lazyAlsChunkDecoder';

/** Worker threads running decodeAndHash; jobs go to the worker with the fewest outstanding. */
export class ChunkDecoderPool implements ChunkDecoder {
  readonly #workers: Array<{ w: Worker; load: number }> = [];
  readonly #waiting = new Map<number, { resolve: (r: MemberResult[]) => void; reject: (e: unknown) => void; slot: { load: number }; context: ErrorContext }>();
  #nextId = 0;
  #closed = false;
  readonly #size: number;

  /** `size` workers (default: one per CPU, at most 4). */
  constructor(size = Math.min(4, Math.max(1, availableParallelism()))) {
    this.#size = Math.max(1, size);
  }

  /** Whether jobs run in worker threads (false when running from TypeScript sources). */
  static get available(): boolean {
    return import.meta.url.endsWith('.js');
  }

  #spawn(): { w: Worker; load: number } {
    const slot = { w: new Worker(new URL(import.meta.url), { workerData: { [WORKER_FLAG]: true } }), load: 0 };
    slot.w.unref();
    slot.w.on('message', (r: WireReply) => this.#onReply(r));
    const fail = (e: unknown): void => {
      const i = this.#workers.indexOf(slot);
      if (i >= 0) this.#workers.splice(i, 1);
      for (const [id, p] of this.#waiting) {
        if (p.slot !== slot) continue;
        this.#waiting.delete(id);
        p.reject(new FormatError('DECOMPRESS_FAILED', `decode worker failed: ${e instanceof Error ? e.message : String(e)}`, p.context, { cause: e }));
      }
    };
    slot.w.on('error', fail);
    slot.w.on('exit', (code) => fail(new Error(`exited with code ${code}`)));
    this.#workers.push(slot);
    return slot;
  }

  #onReply(r: WireReply): void {
    const p = this.#waiting.get(r.id);
    if (!p) return;
    this.#waiting.delete(r.id);
    p.slot.load--;
    if ('error' in r) {
      p.reject(new FormatError(r.error.code as FormatErrorCode, r.error.message, p.context));
      return;
    }
    p.resolve(r.results.map((x) => ('ok' in x ? { ok: Buffer.from(x.ok) } : { actual: x.actual })));
  }

  decode(job: SpanJob, context: ErrorContext): Promise<MemberResult[]> {
    if (this.#closed || !ChunkDecoderPool.available) return inProcessDecoder.decode(job, context);
    let slot = this.#workers.length < this.#size ? this.#spawn() : this.#workers[0]!;
    for (const s of this.#workers) if (s.load < slot.load) slot = s;
    const id = this.#nextId++;
    // a copy the worker owns (the source's buffer may be a slice of a larger one that others use)
    const data = new ArrayBuffer(job.data.length);
    new Uint8Array(data).set(job.data);
    const wire: WireJob = { id, compression: job.compression, data, need: job.need, members: job.members };
    return new Promise<MemberResult[]>((resolve, reject) => {
      this.#waiting.set(id, { resolve, reject, slot, context });
      slot.load++;
      if (slot.load === 1) slot.w.ref();
      slot.w.postMessage(wire, [data]);
    }).finally(() => {
      if (slot.load === 0) slot.w.unref();
    });
  }

  async close(): Promise<void> {
    this.#closed = true;
    const ws = this.#workers.splice(0);
    await Promise.all(ws.map((s) => s.w.terminate()));
  }
}

/** Copy `b` into an ArrayBuffer of its own unless it already is exactly one (never a pool slice). */
function ownArrayBuffer(b: Buffer): ArrayBuffer {
  if (b.byteOffset === 0 && b.byteLength === b.buffer.byteLength && b.buffer instanceof ArrayBuffer) return b.buffer;
  const ab = new ArrayBuffer(b.length);
  new Uint8Array(ab).set(b);
  return ab;
}

if (!isMainThread && (workerData as Record<string, unknown> | null)?.[WORKER_FLAG] === true) {
  const port = parentPort!;
  port.on('message', (j: WireJob) => {
    const job: SpanJob = { compression: j.compression, data: Buffer.from(j.data), need: j.need, members: j.members };
    decodeAndHash(job, {}).then(
      ({ results }) => {
        const transfer: ArrayBuffer[] = [];
        const out = results.map((r, i): { ok: ArrayBuffer } | { actual: string } => {
          if (r.actual !== j.members[i]!.digest) return { actual: r.actual };
          const ab = ownArrayBuffer(r.bytes);
          if (!transfer.includes(ab)) transfer.push(ab);
          return { ok: ab };
        });
        port.postMessage({ id: j.id, results: out } satisfies WireReply, transfer);
      },
      (e: unknown) => {
        const code = e instanceof FormatError ? e.code : 'DECOMPRESS_FAILED';
        port.postMessage({ id: j.id, error: { code, message: e instanceof Error ? e.message : String(e) } } satisfies WireReply);
      },
    );
  });
}
