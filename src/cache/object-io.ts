/**
 * The object store's per-object file work — write a verified chunk (temp file, rename into place)
 * and read + re-hash a stored one — done for many objects per call, in worker threads with plain
 * synchronous syscalls. On the event loop each object cost six promise-wrapped filesystem calls
 * (stat, open, write, close, mkdir, rename), each a trip through libuv's pool: a 64 MiB file of
 * 64 KiB chunks spent a quarter of the daemon's main thread there. Here the main thread sends one
 * message per batch; the bytes travel without a copy when they are in shared memory (the decode
 * workers produce chunks there), and stored objects come back in shared memory too.
 *
 * Semantics are the object store's (see object-store.ts): a write never overwrites a present object
 * (reported 'present', so eviction counts bytes once), a failed write removes its temp file and
 * reports the errno code; a read hashes the whole file and reports a mismatch (the store deletes and
 * warns). When workers cannot start (running from TypeScript sources under a test runner) the same
 * operations run in process with node:fs/promises.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, fstatSync, fsyncSync, mkdirSync, openSync, readSync, renameSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { mkdir, open, rename, stat, unlink } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { DigestHasher, type Digest } from '../core/digest.js';
import { type PoolSlot, serveWorker, WorkerPool } from '../core/worker-pool.js';

/** An errno-carrying failure as it crosses the thread boundary. */
export interface IoFailure {
  readonly code: string;
  readonly message: string;
}

export type PutOutcome = 'stored' | 'present' | IoFailure;
export type GetOutcome = { readonly ok: Buffer } | 'absent' | { readonly corrupt: string } | IoFailure;

export interface PutItem {
  readonly target: string;
  readonly data: Uint8Array;
}
export interface GetItem {
  readonly path: string;
  readonly digest: Digest;
}

const FILE_MODE = 0o600;
const DIR_MODE = 0o700;
const WORKER_FLAG = 'lazyAlsObjectIo';

function failure(e: unknown): IoFailure {
  const code = (e as { code?: unknown }).code;
  return { code: typeof code === 'string' ? code : 'EIO', message: e instanceof Error ? e.message : String(e) };
}

function tempPath(tmpDir: string): string {
  // the name pattern the store's startup sweep knows (writer's pid inside)
  return join(tmpDir, `w-${process.pid}-${randomBytes(8).toString('hex')}.tmp`);
}

function putSync(tmpDir: string, fsync: boolean, target: string, data: Uint8Array): PutOutcome {
  if (statSync(target, { throwIfNoEntry: false }) !== undefined) return 'present';
  const tmp = tempPath(tmpDir);
  let fd: number | undefined;
  try {
    fd = openSync(tmp, 'wx', FILE_MODE);
    for (let done = 0; done < data.length; ) done += writeSync(fd, data, done, data.length - done);
    if (fsync) fsyncSync(fd);
    closeSync(fd);
    fd = undefined;
    try {
      renameSync(tmp, target);
    } catch (e) {
      if ((e as { code?: string }).code !== 'ENOENT') throw e;
      mkdirSync(dirname(target), { recursive: true, mode: DIR_MODE }); // first object of its shard
      renameSync(tmp, target);
    }
    return 'stored';
  } catch (e) {
    if (fd !== undefined) closeSync(fd);
    try {
      unlinkSync(tmp);
    } catch {
      /* never created */
    }
    return failure(e);
  }
}

function getSync(path: string, digest: Digest): GetOutcome | { ok: SharedArrayBuffer } {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (e) {
    return (e as { code?: string }).code === 'ENOENT' ? 'absent' : failure(e);
  }
  try {
    const size = fstatSync(fd).size;
    const sab = new SharedArrayBuffer(size);
    const buf = Buffer.from(sab);
    let n = 0;
    while (n < size) {
      const r = readSync(fd, buf, n, size - n, n);
      if (r === 0) break;
      n += r;
    }
    const actual = DigestHasher.for(digest).update(buf.subarray(0, n)).digest();
    // Shrunk between fstat and read: the buffer's tail was never read nor hashed, so it is not the object.
    if (n !== size) return { corrupt: actual };
    return actual === digest ? { ok: sab } : { corrupt: actual };
  } catch (e) {
    return failure(e);
  } finally {
    closeSync(fd);
  }
}

async function putAsync(tmpDir: string, fsync: boolean, target: string, data: Uint8Array): Promise<PutOutcome> {
  if (await stat(target).then(() => true, () => false)) return 'present';
  const tmp = tempPath(tmpDir);
  try {
    const fh = await open(tmp, 'wx', FILE_MODE);
    try {
      for (let done = 0; done < data.length; ) done += (await fh.write(data, done, data.length - done)).bytesWritten;
      if (fsync) await fh.sync();
    } finally {
      await fh.close();
    }
    await mkdir(dirname(target), { recursive: true, mode: DIR_MODE });
    await rename(tmp, target);
    return 'stored';
  } catch (e) {
    await unlink(tmp).catch(() => undefined);
    return failure(e);
  }
}

async function getAsync(path: string, digest: Digest): Promise<GetOutcome> {
  let fh;
  try {
    fh = await open(path, 'r');
  } catch (e) {
    return (e as { code?: string }).code === 'ENOENT' ? 'absent' : failure(e);
  }
  try {
    const data = await fh.readFile();
    const actual = DigestHasher.for(digest).update(data).digest();
    return actual === digest ? { ok: data } : { corrupt: actual };
  } catch (e) {
    return failure(e);
  } finally {
    await fh.close();
  }
}

type WireRequest =
  | {
      readonly op: 'put';
      readonly tmpDir: string;
      readonly fsync: boolean;
      readonly items: ReadonlyArray<{ target: string; sab: SharedArrayBuffer; at: number; length: number }>;
    }
  | { readonly op: 'get'; readonly items: readonly GetItem[] };
type WireReply = ReadonlyArray<PutOutcome | GetOutcome | { ok: SharedArrayBuffer }>;

/** Bytes in shared memory (a copy only when they are not there already). */
function shared(b: Uint8Array): { sab: SharedArrayBuffer; at: number; length: number } {
  if (b.buffer instanceof SharedArrayBuffer) return { sab: b.buffer, at: b.byteOffset, length: b.byteLength };
  const sab = new SharedArrayBuffer(b.byteLength);
  new Uint8Array(sab).set(b);
  return { sab, at: 0, length: b.byteLength };
}

export class ObjectIo {
  readonly #tmpDir: string;
  readonly #fsync: boolean;
  readonly #pool: WorkerPool<WireRequest, WireReply>;

  /** `threads` workers (0: in process). Started now, so the first cold read does not wait for them. */
  constructor(o: { tmpDir: string; fsync: boolean; threads?: number }) {
    this.#tmpDir = o.tmpDir;
    this.#fsync = o.fsync;
    const size = o.threads ?? Math.min(2, availableParallelism());
    this.#pool = new WorkerPool({ script: new URL(import.meta.url), flag: WORKER_FLAG, size, name: 'object io worker' });
  }

  /** Whether workers can run (false when running from TypeScript sources). */
  static get available(): boolean {
    return WorkerPool.canRun(new URL(import.meta.url));
  }

  get threads(): number {
    return this.#pool.threads;
  }

  /**
   * Split `n` items over the workers (contiguous runs, least loaded first), at least 32 per worker:
   * every message wakes a thread, and on a saturated machine the wake-ups, not the file calls, were
   * what a batch of 16 chunks split in two cost; other batches keep the other worker busy.
   */
  #slices(n: number): Array<{ slot: PoolSlot; from: number; to: number }> {
    const slots = this.#pool.lightest(Math.ceil(n / 32));
    const per = Math.ceil(n / slots.length);
    return slots.map((slot, k) => ({ slot, from: k * per, to: Math.min(n, (k + 1) * per) })).filter((s) => s.from < s.to);
  }

  async putMany(items: readonly PutItem[]): Promise<PutOutcome[]> {
    if (!this.#pool.running) {
      return Promise.all(items.map((it) => putAsync(this.#tmpDir, this.#fsync, it.target, it.data)));
    }
    const out = new Array<PutOutcome>(items.length);
    await Promise.all(
      this.#slices(items.length).map(async ({ slot, from, to }) => {
        const part = items.slice(from, to);
        try {
          const r = await this.#pool.send(
            slot,
            { op: 'put', tmpDir: this.#tmpDir, fsync: this.#fsync, items: part.map((it) => ({ target: it.target, ...shared(it.data) })) },
          );
          r.forEach((x, k) => (out[from + k] = x as PutOutcome));
        } catch (e) {
          for (let k = from; k < to; k++) out[k] = failure(e);
        }
      }),
    );
    return out;
  }

  async getMany(items: readonly GetItem[]): Promise<GetOutcome[]> {
    if (!this.#pool.running) return Promise.all(items.map((it) => getAsync(it.path, it.digest)));
    const out = new Array<GetOutcome>(items.length);
    await Promise.all(
      this.#slices(items.length).map(async ({ slot, from, to }) => {
        try {
          const r = await this.#pool.send(slot, { op: 'get', items: items.slice(from, to) });
          r.forEach((x, k) => {
            out[from + k] = typeof x === 'object' && 'ok' in x ? { ok: Buffer.from(x.ok as SharedArrayBuffer) } : (x as GetOutcome);
          });
        } catch (e) {
          for (let k = from; k < to; k++) out[k] = failure(e);
        }
      }),
    );
    return out;
  }

  close(): Promise<void> {
    return this.#pool.close();
  }
}

serveWorker<WireRequest, WireReply>(WORKER_FLAG, (req) =>
  req.op === 'put'
    ? req.items.map((it) => putSync(req.tmpDir, req.fsync, it.target, new Uint8Array(it.sab, it.at, it.length)))
    : req.items.map((it) => getSync(it.path, it.digest)),
);
