/**
 * Filesystem work of `lazy-als extract` in worker threads, in batches of synchronous calls.
 *
 * A layer has tens of thousands of small files, and each needs half a dozen calls (create, write,
 * rename, chown, chmod, utimes…). As fs promises each call is a round trip main thread → libuv pool
 * → main thread; that overhead, not the kernel's work, made extract CPU-bound. Here the main thread
 * posts lists of operations (one message per batch, file content packed into one transferred
 * buffer, or — when it already lives in a SharedArrayBuffer, as a plain tar's reads do — handed over
 * as that shared memory, not copied) and a worker runs them with the plain synchronous calls, as tar does; the main thread's
 * event loop stays free (this module is only used by the CLI, never by library code).
 *
 * Ordering: the operations of one batch run in order, batches sent to the same worker run in the
 * order sent; callers route dependent operations (all writes of one file) to the same worker.
 * Safety is the caller's: paths are inside the work dir and built from index names (no "/" games),
 * files are created O_EXCL|O_NOFOLLOW and attributes set with the l* calls, as before.
 * Paths and symlink targets are ByteStrings (names are bytes): every call gets them as Buffers, so
 * a name that is not UTF-8 lands with exactly its bytes.
 */
import {
  closeSync,
  constants,
  chmodSync,
  lchownSync,
  linkSync,
  lutimesSync,
  mkdirSync,
  openSync,
  renameSync,
  symlinkSync,
  truncateSync,
  writeSync,
} from 'node:fs';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import type { ByteString } from '../formats/model.js';

const P = (p: string): Buffer => Buffer.from(p, 'latin1');

const CREATE_FLAGS = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;
const WRITE_FLAGS = constants.O_WRONLY | constants.O_NOFOLLOW;

/** A path or link target as bytes (formats/byte-string.ts); plain strings cross the worker boundary. */
type B = ByteString;

/** One operation; `write` carries [buffer, start, length] into its batch's data buffers (DataAt). */
export type FsOp =
  | readonly ['mkdir', B, number]
  | readonly ['write', B, boolean, number, number, number, number] // path, create, file offset, buffer, data start, length
  | readonly ['touch', B]
  | readonly ['truncate', B, number] // path, size: a sparse file's trailing hole
  | readonly ['rename', B, B]
  | readonly ['symlink', B, B] // target, path
  | readonly ['link', B, B] // existing, new
  | readonly ['attrs', B, number, number, number, number] // path, uid, gid, mode (-1: no chmod), mtime (NaN: none)
  | readonly ['utimes', B, number];

/** Where a write's bytes are in its batch: buffer -1 is the batch's own copy, k ≥ 0 its k-th shared buffer. */
export type DataAt = (buffer: number, start: number) => FsOp;

interface Batch {
  readonly id: number;
  readonly ops: FsOp[];
  readonly data: ArrayBuffer | undefined;
  readonly shared: SharedArrayBuffer[];
}

interface Reply {
  readonly id: number;
  readonly error?: { message: string; code?: string };
}

function runBatch(b: Batch): void {
  const data = b.data ? new Uint8Array(b.data) : undefined;
  const shared = b.shared.map((sab) => new Uint8Array(sab));
  let open: { path: string; fd: number } | undefined;
  const fdFor = (path: string, create: boolean): number => {
    if (open && open.path === path && !create) return open.fd;
    if (open) closeSync(open.fd);
    open = undefined;
    const fd = openSync(P(path), create ? CREATE_FLAGS : WRITE_FLAGS, 0o600);
    open = { path, fd };
    return fd;
  };
  try {
    for (const op of b.ops) {
      switch (op[0]) {
        case 'mkdir':
          mkdirSync(P(op[1]), op[2]);
          break;
        case 'write': {
          const fd = fdFor(op[1], op[2]);
          const [, , , fileOffset, buffer, start, length] = op;
          const src = buffer < 0 ? data! : shared[buffer]!;
          for (let done = 0; done < length; ) done += writeSync(fd, src, start + done, length - done, fileOffset + done);
          break;
        }
        case 'touch':
          closeSync(openSync(P(op[1]), CREATE_FLAGS, 0o600));
          break;
        case 'rename':
          renameSync(P(op[1]), P(op[2]));
          break;
        case 'truncate':
          truncateSync(P(op[1]), op[2]);
          break;
        case 'symlink':
          symlinkSync(P(op[1]), P(op[2]));
          break;
        case 'link':
          linkSync(P(op[1]), P(op[2]));
          break;
        case 'attrs': {
          // lchown first: it clears setuid/setgid bits and file capabilities, chmod restores the bits.
          const [, path, uid, gid, mode, mtime] = op;
          lchownSync(P(path), uid, gid);
          if (mode >= 0) chmodSync(P(path), mode);
          if (!Number.isNaN(mtime)) lutimesSync(P(path), mtime, mtime);
          break;
        }
        case 'utimes':
          lutimesSync(P(op[1]), op[2], op[2]);
          break;
      }
    }
  } finally {
    if (open) closeSync(open.fd);
  }
}

if (!isMainThread && (workerData as { lazyAlsFsBatch?: boolean } | null)?.lazyAlsFsBatch === true) {
  parentPort!.on('message', (b: Batch) => {
    let reply: Reply;
    try {
      runBatch(b);
      reply = { id: b.id };
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      reply = { id: b.id, error: { message: err.message ?? String(e), ...(err.code !== undefined ? { code: err.code } : {}) } };
    }
    parentPort!.postMessage(reply);
  });
}

export class FsBatchError extends Error {
  readonly code: string | undefined;
  constructor(message: string, code: string | undefined) {
    super(message);
    this.code = code;
  }
}

/** Ops collected for one worker, flushed as one message. */
class Pending {
  ops: FsOp[] = [];
  /** Bytes to copy into the batch's own buffer, and their total. */
  parts: Uint8Array[] = [];
  bytes = 0;
  /** Shared memory the writes point into (by index), and the bytes they write from it. */
  readonly shared: SharedArrayBuffer[] = [];
  readonly sharedIndex = new Map<SharedArrayBuffer, number>();
  sharedBytes = 0;

  /** Where `data` will be in the batch: a view of shared memory stays there, other bytes are copied. */
  place(data: Uint8Array): [number, number] {
    const buf = data.buffer;
    if (buf instanceof SharedArrayBuffer) {
      let k = this.sharedIndex.get(buf);
      if (k === undefined) {
        k = this.shared.push(buf) - 1;
        this.sharedIndex.set(buf, k);
      }
      this.sharedBytes += data.length;
      return [k, data.byteOffset];
    }
    const at = this.bytes;
    this.parts.push(data);
    this.bytes += data.length;
    return [-1, at];
  }
}

/** OPS_PER_BATCH / BYTES_PER_BATCH: what one message carries; MAX_INFLIGHT_BYTES: backpressure. */
const OPS_PER_BATCH = 1024;
const BYTES_PER_BATCH = 8 * 1024 * 1024;
const MAX_INFLIGHT_BYTES = 64 * 1024 * 1024;

export class FsBatcher {
  readonly #workers: Worker[];
  readonly #pending: Pending[];
  readonly #waiting = new Map<number, { resolve: () => void; reject: (e: unknown) => void; bytes: number }>();
  #nextId = 0;
  #inflight = 0;
  #error: unknown;
  #drained: (() => void)[] = [];

  constructor(workers: number) {
    this.#workers = Array.from({ length: Math.max(1, workers) }, () => {
      const w = new Worker(new URL(import.meta.url), { workerData: { lazyAlsFsBatch: true } });
      w.on('message', (r: Reply) => this.#onReply(r));
      w.on('error', (e) => this.#fail(e));
      return w;
    });
    this.#pending = this.#workers.map(() => new Pending());
  }

  get workers(): number {
    return this.#workers.length;
  }

  #fail(e: unknown): void {
    this.#error ??= e;
    for (const w of this.#waiting.values()) w.reject(e);
    this.#waiting.clear();
    this.#wake();
  }

  #wake(): void {
    const d = this.#drained;
    this.#drained = [];
    for (const f of d) f();
  }

  #onReply(r: Reply): void {
    const w = this.#waiting.get(r.id);
    if (!w) return;
    this.#waiting.delete(r.id);
    this.#inflight -= w.bytes;
    if (r.error) {
      const e = new FsBatchError(r.error.message, r.error.code);
      this.#error ??= e;
      w.reject(e);
    } else {
      w.resolve();
    }
    this.#wake();
  }

  /**
   * Queue `op` for worker `worker % workers` (`data`: the bytes of a write, copied now unless they
   * are a view of shared memory, which must then not change). Resolves once the queue is below its
   * byte limit; failures surface here or from flush().
   */
  async add(worker: number, op: FsOp | DataAt, data?: Uint8Array): Promise<void> {
    if (this.#error !== undefined) throw this.#error;
    const i = worker % this.#workers.length;
    const p = this.#pending[i]!;
    if (data) {
      p.ops.push((op as DataAt)(...p.place(data)));
    } else {
      p.ops.push(op as FsOp);
    }
    if (p.ops.length >= OPS_PER_BATCH || p.bytes + p.sharedBytes >= BYTES_PER_BATCH) this.#send(i).catch(() => undefined);
    while (this.#inflight > MAX_INFLIGHT_BYTES && this.#error === undefined) await new Promise<void>((r) => this.#drained.push(r));
    if (this.#error !== undefined) throw this.#error;
  }

  #send(i: number): Promise<void> {
    const p = this.#pending[i]!;
    if (p.ops.length === 0) return Promise.resolve();
    this.#pending[i] = new Pending();
    let data: ArrayBuffer | undefined;
    if (p.bytes > 0) {
      const buf = new Uint8Array(p.bytes);
      let at = 0;
      for (const part of p.parts) {
        buf.set(part, at);
        at += part.length;
      }
      data = buf.buffer;
    }
    const id = this.#nextId++;
    // shared memory counts too: the worker keeps it alive until the batch ran
    const bytes = p.bytes + p.sharedBytes + p.ops.length * 64;
    this.#inflight += bytes;
    return new Promise<void>((resolve, reject) => {
      this.#waiting.set(id, { resolve, reject, bytes });
      const batch: Batch = { id, ops: p.ops, data, shared: p.shared };
      this.#workers[i]!.postMessage(batch, data ? [data] : []);
    });
  }

  /** Send everything queued and wait until every batch sent so far has run. */
  async flush(): Promise<void> {
    for (let i = 0; i < this.#workers.length; i++) this.#send(i).catch(() => undefined);
    while (this.#waiting.size > 0 && this.#error === undefined) await new Promise<void>((r) => this.#drained.push(r));
    if (this.#error !== undefined) throw this.#error;
  }

  /** Run `ops` spread over the workers (they must not depend on each other), then flush. */
  async runAll(ops: readonly FsOp[]): Promise<void> {
    ops.forEach((op, k) => void this.add(Math.floor(k / OPS_PER_BATCH), op).catch(() => undefined));
    await this.flush();
  }

  async close(): Promise<void> {
    await Promise.all(this.#workers.map((w) => w.terminate()));
  }
}
