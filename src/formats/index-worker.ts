/**
 * Layer indexes built in a worker thread with a capped heap, so that parsing a TOC, a tar-split or a
 * whole plain layer neither blocks the daemon's event loop nor leaves its garbage on the daemon's
 * heap: a 100k-entry TOC makes hundreds of MiB of short-lived JS objects, which the main heap (sized
 * for the daemon's long-lived state) lets pile up before it collects them. The worker's heap is
 * capped (Limits.maxIndexHeapBytes): V8 collects early, and a layer whose index does not fit is
 * refused with TOC_TOO_LARGE naming the blob, never an out-of-memory crash of the daemon.
 *
 * The worker runs the very openLayer / loadLayerRecord of open-layer.ts. It has no network: its blob
 * reads are posted to this thread, which reads the real blob (registry, dfs, file) and transfers the
 * bytes. A plain layer's pieces (onPlainChunk) come back in batches, acknowledged one batch at a
 * time (the backpressure of the pass). The result crosses as the index's table and columns
 * (transferred, index-wire.ts) and the record as its JSON bytes, which the store persists as they
 * are: the TOC text in the record never becomes a string on this heap.
 *
 * Trust is unchanged: the worker verifies the TOC against its pinned digest (VerifiedToc) before it
 * parses it, exactly as in-process. One build at a time (a queue), each in a fresh worker that exits
 * after it: memory is one capped heap, whatever the number of layers opened at once.
 *
 * From TypeScript sources (tests under a runner) workers cannot start: the same calls run in-process.
 */
import { isMainThread, parentPort, Worker, workerData, type MessagePort } from 'node:worker_threads';
import { readRanges, type ByteRange, type RandomAccessBlob } from '../core/blob.js';
import { DEFAULT_LIMITS, type Limits } from '../core/limits.js';
import { FormatError } from './errors.js';
import { errorFromWire, errorToWire, indexFromWire, indexToWire, type WireError, type WireIndex } from './index-wire.js';
import type { LayerRecord, OpenLayerOptions } from './layer-reader.js';
import type { ChunkRef, LayerIndex } from './model.js';
import { loadLayerRecord, openLayer } from './open-layer.js';

const WORKER_FLAG = 'lazyAlsIndexWorker';
/** Pieces of a plain layer sent back per batch (bytes, count). */
const BATCH_BYTES = 4 * 1024 * 1024;
const BATCH_COUNT = 1024;
/** Young generation of the worker: small, so short-lived parse objects are collected often. */
const YOUNG_GEN_MB = 8;

/** What the catalog persists: the record, or its JSON bytes (built in the worker; never parsed on this thread). */
export type StoredRecord = LayerRecord | Buffer;

export function recordJsonOf(record: StoredRecord): Buffer {
  return Buffer.isBuffer(record) ? record : Buffer.from(JSON.stringify(record));
}

export interface BuiltLayer {
  readonly index: LayerIndex;
  readonly record: StoredRecord;
}

type OpenJob = {
  readonly op: 'open';
  readonly blob: { readonly name: string; readonly size: number };
  readonly options: Omit<OpenLayerOptions, 'signal' | 'onPlainChunk'>;
  readonly chunks: boolean;
};
type LoadJob = { readonly op: 'load'; readonly record: ArrayBuffer; readonly limits: Limits };
type Job = OpenJob | LoadJob;

/** worker → main */
type Up =
  | { readonly op: 'read'; readonly id: number; readonly ranges: readonly ByteRange[] }
  | { readonly op: 'chunks'; readonly data: ArrayBuffer; readonly items: readonly { chunk: ChunkRef; path: string; at: number; length: number }[] }
  | { readonly op: 'done'; readonly index: WireIndex; readonly record?: ArrayBuffer }
  | { readonly op: 'failed'; readonly error: WireError };
/** main → worker */
type Down =
  | { readonly op: 'read'; readonly id: number; readonly data?: ArrayBuffer; readonly lengths?: readonly number[]; readonly error?: WireError }
  | { readonly op: 'ack' };

/** Builds indexes in capped worker threads, one at a time. */
export class IndexWorkers {
  #queue: Promise<unknown> = Promise.resolve();

  /** Whether builds run in worker threads (false when running from TypeScript sources). */
  static get available(): boolean {
    return import.meta.url.endsWith('.js');
  }

  openLayer(blob: RandomAccessBlob, options: OpenLayerOptions): Promise<BuiltLayer> {
    if (!IndexWorkers.available) return openLayer(blob, options);
    const { signal, onPlainChunk, ...rest } = options;
    const job: OpenJob = { op: 'open', blob: { name: blob.name, size: blob.size }, options: rest, chunks: onPlainChunk !== undefined };
    return this.#enqueue({ job, transfer: [], limits: options.limits ?? DEFAULT_LIMITS, blob, onChunk: onPlainChunk, signal });
  }

  async loadLayerRecord(record: StoredRecord, limits: Limits = DEFAULT_LIMITS): Promise<LayerIndex> {
    if (!IndexWorkers.available) return loadLayerRecord(Buffer.isBuffer(record) ? parseRecord(record) : record, limits);
    const bytes = new Uint8Array(recordJsonOf(record));
    const copy = new Uint8Array(bytes.byteLength);
    copy.set(bytes);
    const built = await this.#enqueue({ job: { op: 'load', record: copy.buffer, limits }, transfer: [copy.buffer], limits });
    return built.index;
  }

  #enqueue(run: JobRun): Promise<BuiltLayer> {
    const done = this.#queue.then(() => runJob(run));
    this.#queue = done.catch(() => undefined);
    return done;
  }
}

function parseRecord(bytes: Buffer): LayerRecord {
  try {
    return JSON.parse(bytes.toString('utf8')) as LayerRecord;
  } catch (e) {
    throw new FormatError('TOC_MALFORMED', `layer record is not JSON: ${(e as Error).message}`, {}, { cause: e });
  }
}

/** A job and what the main thread serves it with: the blob's bytes and plain chunks for an open job. */
interface JobRun {
  readonly job: Job;
  readonly transfer: ArrayBuffer[];
  readonly limits: Limits;
  readonly blob?: RandomAccessBlob | undefined;
  readonly onChunk?: OpenLayerOptions['onPlainChunk'];
  readonly signal?: AbortSignal | undefined;
}

/** One job in a fresh worker; resolves with the index and the record bytes, or rejects with the typed error. */
function runJob({ job, transfer, limits, blob, onChunk, signal }: JobRun): Promise<BuiltLayer> {
  signal?.throwIfAborted();
  const heapMb = Math.max(16, Math.ceil(limits.maxIndexHeapBytes / (1024 * 1024)));
  const w = new Worker(new URL(import.meta.url), {
    workerData: { [WORKER_FLAG]: true },
    resourceLimits: { maxOldGenerationSizeMb: heapMb, maxYoungGenerationSizeMb: YOUNG_GEN_MB },
  });
  const name = job.op === 'open' ? job.blob.name : 'layer record';
  return new Promise<BuiltLayer>((resolve, reject) => {
    let settled = false;
    const finish = (f: () => void): void => {
      if (settled) return;
      settled = true;
      signal?.removeEventListener('abort', onAbort);
      void w.terminate();
      f();
    };
    const onAbort = (): void => finish(() => reject(signal!.reason));
    signal?.addEventListener('abort', onAbort, { once: true });
    w.on('error', (e: Error & { code?: string }) =>
      finish(() =>
        reject(
          e.code === 'ERR_WORKER_OUT_OF_MEMORY'
            ? new FormatError(
                'TOC_TOO_LARGE',
                `building the layer index needs more than the ${heapMb} MiB of heap it may use (max_index_heap_bytes)`,
                { blob: name },
              )
            : e,
        ),
      ),
    );
    w.on('exit', (code) => finish(() => reject(new Error(`index worker exited with code ${code} (blob ${name})`))));
    w.on('message', (m: Up) => {
      if (m.op === 'done') finish(() => resolve({ index: indexFromWire(m.index), record: m.record ? Buffer.from(m.record) : Buffer.alloc(0) }));
      else if (m.op === 'failed') finish(() => reject(errorFromWire(m.error)));
      else if (m.op === 'read') void serveRead(w, blob!, m, signal);
      else void serveChunks(w, m, onChunk!).catch((e: unknown) => finish(() => reject(e)));
    });
    w.postMessage(job, transfer);
  });
}

async function serveRead(w: Worker, blob: RandomAccessBlob, m: Extract<Up, { op: 'read' }>, signal: AbortSignal | undefined): Promise<void> {
  try {
    const bufs = m.ranges.length === 1 ? [await blob.read(m.ranges[0]!.offset, m.ranges[0]!.length, signal)] : await readRanges(blob, m.ranges, signal);
    const total = bufs.reduce((n, b) => n + b.length, 0);
    const out = new Uint8Array(total);
    let at = 0;
    for (const b of bufs) {
      out.set(b, at);
      at += b.length;
    }
    w.postMessage({ op: 'read', id: m.id, data: out.buffer, lengths: bufs.map((b) => b.length) } satisfies Down, [out.buffer]);
  } catch (e) {
    w.postMessage({ op: 'read', id: m.id, error: errorToWire(e) } satisfies Down);
  }
}

async function serveChunks(w: Worker, m: Extract<Up, { op: 'chunks' }>, onChunk: NonNullable<OpenLayerOptions['onPlainChunk']>): Promise<void> {
  const data = Buffer.from(m.data);
  for (const it of m.items) await onChunk(it.chunk, data.subarray(it.at, it.at + it.length), it.path);
  w.postMessage({ op: 'ack' } satisfies Down);
}

// ---- the worker side ----

/** Blob reads posted to the main thread, by id. */
type Waiting = Map<number, { resolve: (b: Buffer[]) => void; reject: (e: unknown) => void }>;

/** The blob, read through the main thread. */
class PortBlob implements RandomAccessBlob {
  readonly name: string;
  readonly size: number;
  readonly #port: MessagePort;
  readonly #waiting: Waiting;
  #next = 0;

  constructor(port: MessagePort, info: { name: string; size: number }, waiting: Waiting) {
    this.#port = port;
    this.name = info.name;
    this.size = info.size;
    this.#waiting = waiting;
  }

  async read(offset: number, length: number): Promise<Buffer> {
    return (await this.readMany([{ offset, length }]))[0]!;
  }

  readMany(ranges: readonly ByteRange[]): Promise<Buffer[]> {
    const id = this.#next++;
    return new Promise<Buffer[]>((resolve, reject) => {
      this.#waiting.set(id, { resolve, reject });
      this.#port.postMessage({ op: 'read', id, ranges } satisfies Up);
    });
  }
}

/** onPlainChunk of the worker: pieces batched, one batch in flight (awaited until the main thread acked it). */
class ChunkBatcher {
  readonly #port: MessagePort;
  #items: { chunk: ChunkRef; path: string; data: Buffer }[] = [];
  #bytes = 0;
  #acked: (() => void) | undefined;

  constructor(port: MessagePort) {
    this.#port = port;
  }

  onAck(): void {
    const a = this.#acked;
    this.#acked = undefined;
    a?.();
  }

  async add(chunk: ChunkRef, data: Buffer, path: string): Promise<void> {
    this.#items.push({ chunk, path, data: Buffer.from(data) });
    this.#bytes += data.length;
    if (this.#bytes >= BATCH_BYTES || this.#items.length >= BATCH_COUNT) await this.flush();
  }

  async flush(): Promise<void> {
    if (this.#items.length === 0) return;
    const out = new Uint8Array(this.#bytes);
    let at = 0;
    const items = this.#items.map((it) => {
      out.set(it.data, at);
      const r = { chunk: it.chunk, path: it.path, at, length: it.data.length };
      at += it.data.length;
      return r;
    });
    this.#items = [];
    this.#bytes = 0;
    const acked = new Promise<void>((r) => (this.#acked = r));
    this.#port.postMessage({ op: 'chunks', data: out.buffer, items } satisfies Up, [out.buffer]);
    await acked;
  }
}

async function work(port: MessagePort, job: Job, waiting: Waiting, batcher: ChunkBatcher): Promise<void> {
  if (job.op === 'load') {
    const index = loadLayerRecord(parseRecord(Buffer.from(job.record)), job.limits);
    const { wire, transfer } = indexToWire(index);
    port.postMessage({ op: 'done', index: wire } satisfies Up, transfer);
    return;
  }
  const blob = new PortBlob(port, job.blob, waiting);
  const opened = await openLayer(blob, { ...job.options, ...(job.chunks ? { onPlainChunk: (c, d, p) => batcher.add(c, d, p) } : {}) });
  await batcher.flush();
  const record = recordJsonOf(opened.record);
  const { wire, transfer } = indexToWire(opened.index);
  const rec = new Uint8Array(record.byteLength);
  rec.set(record);
  port.postMessage({ op: 'done', index: wire, record: rec.buffer } satisfies Up, [...transfer, rec.buffer]);
}

if (!isMainThread && (workerData as Record<string, unknown> | null)?.[WORKER_FLAG] === true) {
  const port = parentPort!;
  const waiting: Waiting = new Map();
  const batcher = new ChunkBatcher(port);
  port.on('message', (m: Job | Down) => {
    if (m.op === 'ack') return batcher.onAck();
    if (m.op === 'read') {
      const p = waiting.get(m.id);
      waiting.delete(m.id);
      if (!p) return;
      if (m.error) return p.reject(errorFromWire(m.error));
      const all = Buffer.from(m.data!);
      let at = 0;
      p.resolve(m.lengths!.map((n) => all.subarray(at, (at += n))));
      return;
    }
    work(port, m, waiting, batcher).catch((e: unknown) => port.postMessage({ op: 'failed', error: errorToWire(e) } satisfies Up));
  });
}
