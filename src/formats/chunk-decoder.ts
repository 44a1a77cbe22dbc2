/**
 * Decode-and-verify of chunk spans in worker threads, so that decompression and sha256 run beside
 * the fetch instead of on the daemon's event loop (which also serves FUSE and parses HTTP).
 *
 * Memory crosses threads without copies where it can: a span in shared memory (the registry client
 * reads bodies into SharedArrayBuffers) is handed to the worker as is; other spans are copied into
 * one buffer per message, transferred. The worker decodes just the chunks the job needs (the same
 * bounded decodeSlices as in-process, with a zstd context and zlib reused per thread) straight into
 * a SharedArrayBuffer per chunk, hashes every chunk and sends back the verified ones (shared: no
 * copy back, and the chunk cache can hand them on to the object writer thread without a copy
 * either) — or, per chunk, the digest it actually hashed to, or the decode error. The main thread
 * turns those into the same FormatErrors as the in-process path, so callers cannot tell where the
 * work ran. Verified chunks come back as VerifiedBytes: nothing downstream hashes them again.
 *
 * The in-process decoder (inProcessDecoder) is used when no pool is given, and by the pool itself
 * when it cannot start workers from compiled code (running from TypeScript sources under a test
 * runner), so behaviour never depends on it.
 */
import { availableParallelism } from 'node:os';
import { DigestHasher, type Digest } from '../core/digest.js';
import type { ErrorContext } from '../core/errors.js';
import { type PoolSlot, serveWorker, WorkerPool } from '../core/worker-pool.js';
import { alreadyVerified, type VerifiedBytes } from '../core/verified.js';
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
export type MemberResult = { readonly ok: VerifiedBytes } | { readonly actual: string };

/** Per job: its members' results, or the FormatError (DECOMPRESS_*) its span failed with. */
export type JobResult = MemberResult[] | FormatError;

/** Decodes spans and hashes their members; `contexts[i]` names job i in its error. */
export interface ChunkDecoder {
  decodeAll(jobs: readonly SpanJob[], contexts: readonly ErrorContext[]): Promise<JobResult[]>;
  close?(): Promise<void>;
}

/**
 * Decode the span keeping only the members' bytes (what lies before and between them is decoded and
 * dropped: memory is what the TOC declares for the requested chunks, never the decoded prefix), and
 * hash each. With compression 'none' the bytes are views of job.data.
 */
async function decodeAndHash(
  job: SpanJob,
  context: ErrorContext,
  alloc?: (n: number) => Buffer,
): Promise<{ results: Array<{ bytes: Buffer; actual: string }> }> {
  const slices = job.members.map((m) => ({ start: m.innerOffset, length: m.size }));
  const plain = await decodeSlices(job.compression, job.data, slices, context, alloc);
  const results = job.members.map((m, i) => {
    const bytes = plain[i]!;
    return { bytes, actual: DigestHasher.for(m.digest).update(bytes).digest() };
  });
  return { results };
}

/** Decode on the calling thread (zstd synchronously, gzip in the libuv pool). */
export const inProcessDecoder: ChunkDecoder = {
  decodeAll(jobs, contexts) {
    return Promise.all(
      jobs.map(async (job, i): Promise<JobResult> => {
        let results: Array<{ bytes: Buffer; actual: string }>;
        try {
          ({ results } = await decodeAndHash(job, contexts[i]!));
        } catch (e) {
          if (e instanceof FormatError) return e;
          throw e;
        }
        // Decoded members are buffers of their own; uncompressed ones are views of the span, copied
        // so a cached chunk does not keep its whole span alive.
        const copy = job.compression === 'none';
        // alreadyVerified: decodeAndHash just hashed these bytes and r.actual equals their digest
        return results.map((r, k) =>
          r.actual === job.members[k]!.digest ? { ok: alreadyVerified(copy ? Buffer.from(r.bytes) : r.bytes) } : { actual: r.actual },
        );
      }),
    );
  },
};

/**
 * One message: several spans, each either in shared memory (`shared`, passed as is) or copied into
 * the one transferred `data` buffer.
 */
interface WireBatch {
  readonly data: ArrayBuffer;
  readonly jobs: ReadonlyArray<{
    readonly compression: Compression;
    readonly shared?: SharedArrayBuffer;
    readonly at: number;
    readonly length: number;
    readonly need: number;
    readonly members: readonly SpanMember[];
  }>;
}

/** A verified member: `length` bytes at `at` of the reply's slab. */
type WireMember = { readonly at: number; readonly length: number } | { readonly actual: string };
type WireResult = { readonly results: readonly WireMember[] } | { readonly error: { code: string; message: string } };
/**
 * All verified members of a batch in one shared buffer: a SharedArrayBuffer crossing threads costs
 * a fixed price the first time (tens of µs on a loaded 2-vCPU VM, much more with dozens in one
 * message), so one per reply instead of one per chunk; the object writer then gets that one too.
 */
interface WireReply {
  readonly slab: SharedArrayBuffer;
  readonly results: readonly WireResult[];
}

const WORKER_FLAG = 'lazyAlsChunkDecoder';

/**
 * Worker threads running decodeAndHash. A call's spans are packed into at most one message per
 * worker (per-span messages cost more than decoding a 64 KiB zstd chunk), balanced by bytes.
 */
export class ChunkDecoderPool implements ChunkDecoder {
  readonly #pool: WorkerPool<WireBatch, WireReply>;

  /**
   * `size` workers (default: one per CPU, at most 4), started now: a worker takes a while to load
   * its modules, which must not land on the first cold read.
   */
  constructor(size = Math.min(4, Math.max(1, availableParallelism()))) {
    this.#pool = new WorkerPool({ script: new URL(import.meta.url), flag: WORKER_FLAG, size: Math.max(1, size), name: 'decode worker' });
  }

  /** Whether jobs run in worker threads (false when running from TypeScript sources). */
  static get available(): boolean {
    return WorkerPool.canRun(new URL(import.meta.url));
  }

  #post(slot: PoolSlot, jobs: readonly SpanJob[]): Promise<WireReply> {
    // Spans in shared memory go as they are (the worker only reads them). The others are copied
    // into one buffer the worker owns (the source's buffers may be slices of larger ones that others
    // use); allocUnsafeSlow: its own ArrayBuffer, not zero-filled first.
    const isShared = (j: SpanJob): boolean => j.data.buffer instanceof SharedArrayBuffer;
    const total = jobs.reduce((n, j) => n + (isShared(j) ? 0 : j.data.length), 0);
    const copy = Buffer.allocUnsafeSlow(total);
    let at = 0;
    const wireJobs = jobs.map((j): WireBatch['jobs'][number] => {
      const base = { compression: j.compression, length: j.data.length, need: j.need, members: j.members };
      if (isShared(j)) return { ...base, shared: j.data.buffer as SharedArrayBuffer, at: j.data.byteOffset };
      copy.set(j.data, at);
      const w = { ...base, at };
      at += j.data.length;
      return w;
    });
    const data = copy.buffer as ArrayBuffer;
    return this.#pool.send(slot, { data, jobs: wireJobs }, total > 0 ? [data] : []);
  }

  async decodeAll(jobs: readonly SpanJob[], contexts: readonly ErrorContext[]): Promise<JobResult[]> {
    if (!this.#pool.running) return inProcessDecoder.decodeAll(jobs, contexts);
    // least-loaded workers first, one per 4 MiB of spans (a worker decodes and hashes that in a few
    // ms; a message more costs two thread wake-ups, and other calls keep the other workers busy);
    // jobs (largest first) to the lightest batch
    const bytes = jobs.reduce((n, j) => n + j.data.length, 0);
    const slots = this.#pool.lightest(Math.min(jobs.length, Math.ceil(bytes / (4 * 1024 * 1024))));
    const batches = slots.map(() => ({ idx: [] as number[], bytes: 0 }));
    const order = jobs.map((_, i) => i).sort((x, y) => jobs[y]!.data.length - jobs[x]!.data.length);
    for (const i of order) {
      let b = batches[0]!;
      for (const c of batches) if (c.bytes < b.bytes) b = c;
      b.idx.push(i);
      b.bytes += jobs[i]!.data.length;
    }
    const out = new Array<JobResult>(jobs.length);
    await Promise.all(
      batches.map(async (b, k) => {
        if (b.idx.length === 0) return;
        let reply: WireReply;
        try {
          reply = await this.#post(slots[k]!, b.idx.map((i) => jobs[i]!));
        } catch (e) {
          for (const i of b.idx) out[i] = new FormatError(
            'DECOMPRESS_FAILED',
            `decode worker failed: ${e instanceof Error ? e.message : String(e)}`,
            contexts[i]!,
            { cause: e },
          );
          return;
        }
        const slab = reply.slab;
        b.idx.forEach((i, n) => {
          const r = reply.results[n]!;
          // alreadyVerified: the worker hashed each chunk and sent its place only when it matched its digest
          out[i] =
            'error' in r
              ? new FormatError(r.error.code as FormatErrorCode, r.error.message, contexts[i]!)
              : r.results.map((x) => ('at' in x ? { ok: alreadyVerified(Buffer.from(slab, x.at, x.length)) } : { actual: x.actual }));
        });
      }),
    );
    return out;
  }

  close(): Promise<void> {
    return this.#pool.close();
  }
}

/** Consecutive pieces of one shared buffer sized for every member of a batch (see WireReply). */
class Slab {
  readonly sab: SharedArrayBuffer;
  #used = 0;
  constructor(bytes: number) {
    this.sab = new SharedArrayBuffer(bytes);
  }
  /** A piece of `n` bytes; a new buffer of its own if the slab is full (never: it is sized for every member). */
  readonly alloc = (n: number): Buffer => {
    if (this.#used + n > this.sab.byteLength) throw new Error(`decode slab overflow (${this.#used} + ${n} > ${this.sab.byteLength})`);
    const b = Buffer.from(this.sab, this.#used, n);
    this.#used += n;
    return b;
  };
  /** Where `b` (a piece of this slab) starts. */
  at(b: Buffer): number | undefined {
    return b.buffer === this.sab ? b.byteOffset : undefined;
  }
}

/** One span in the worker: where its verified members are in the slab, the digests they hashed to, or the decode error. */
async function decodeInWorker(j: WireBatch['jobs'][number], whole: Buffer, slab: Slab): Promise<WireResult> {
  const data = j.shared ? Buffer.from(j.shared, j.at, j.length) : whole.subarray(j.at, j.at + j.length);
  const job: SpanJob = { compression: j.compression, data, need: j.need, members: j.members };
  try {
    const { results } = await decodeAndHash(job, {}, slab.alloc);
    return {
      results: results.map((r, i): WireMember => {
        if (r.actual !== j.members[i]!.digest) return { actual: r.actual };
        // decoded members are pieces of the slab; 'none' gives views of the span: copied in
        let at = slab.at(r.bytes);
        if (at === undefined) {
          const c = slab.alloc(r.bytes.length);
          r.bytes.copy(c);
          at = c.byteOffset;
        }
        return { at, length: r.bytes.length };
      }),
    };
  } catch (e) {
    const code = e instanceof FormatError ? e.code : 'DECOMPRESS_FAILED';
    return { error: { code, message: e instanceof Error ? e.message : String(e) } };
  }
}

// spans one after the other: this thread has one core's worth of work to give anyway
serveWorker<WireBatch, WireReply>(WORKER_FLAG, async (batch) => {
  const whole = Buffer.from(batch.data);
  // every member's size (decodeSlices allocates one piece per distinct slice; 'none' copies one in)
  const slab = new Slab(batch.jobs.reduce((n, j) => n + j.members.reduce((m, x) => m + x.size, 0), 0));
  const results: WireResult[] = [];
  for (const j of batch.jobs) results.push(await decodeInWorker(j, whole, slab));
  return { slab: slab.sab, results };
});
