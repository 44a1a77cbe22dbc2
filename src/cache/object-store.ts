/**
 * Content-addressed files: `<dir>/<alg>/<hex[0:2]>/<hex[2:]>`, one per digest.
 *
 * Invariants:
 *  - Nothing unverified lands. put() hashes the bytes before writing a single byte; putStream()
 *    hashes while writing into a temp file and only renames it into place once the digest matched;
 *    putVerifiedMany() takes only VerifiedBytes (hashed by the decoder that produced them, which the
 *    type records) and does not hash them a second time.
 *  - Nothing torn is visible: writes go to `<tmpDir>` (same filesystem) and are renamed into place
 *    once complete; fsynced first only when `fsync` is on (metadata). The chunk store runs without
 *    it: a crash can leave a torn or empty object, which the next get() hashes, deletes and misses.
 *  - Nothing corrupt is served. get() re-hashes every object it reads (sha256 runs at ~1.8 GB/s, so a
 *    1 MiB chunk costs ~0.5 ms — small next to the syscalls, and the hot in-memory tier in front of us
 *    absorbs repeated reads). A mismatch deletes the file and reports a miss, so the caller refetches.
 *    Large objects served by range (whole blobs for the `blob` file) are hashed in full once per
 *    process and then identified by (dev, inode, size, ctime); a file written to or replaced behind
 *    our back is re-hashed (our own access-time touches update the remembered ctime).
 *    The residual risk — bit rot of a large object after it was verified in this process — is accepted.
 *  - Temp files of dead processes are swept at open (names carry the writer's pid).
 * Full disk (ENOSPC/EDQUOT): CacheError CACHE_NO_SPACE, the temp file is removed, nothing is cached.
 */
import { open, readdir, readFile, rm, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { DigestHasher, digestAlgorithm, digestHex, isDigest, type Digest } from '../core/digest.js';
import { DigestMismatchError } from '../core/errors.js';
import { silentLogger, type Logger } from '../core/log.js';
import { alreadyVerified, type VerifiedBytes } from '../core/verified.js';
import { commitTemp, privateDir, writeTemp } from './atomic-file.js';
import { toCacheError, type CacheError } from './errors.js';
import { ObjectIo, type IoFailure } from './object-io.js';

export interface ObjectStoreOptions {
  /** Root of the object tree. */
  readonly dir: string;
  /** Temp directory on the same filesystem as `dir`, used by this store only (swept at open). */
  readonly tmpDir: string;
  /** fsync the directory after each rename so objects survive power loss (metadata: true). */
  readonly durable?: boolean;
  /**
   * fsync each object before its rename (default true). Chunk stores may turn it off: objects are
   * re-verified on every read, so a file lost or torn by a crash is only a miss, never bad data.
   */
  readonly fsync?: boolean;
  readonly logger?: Logger;
  /** Temp files of live processes older than this are swept too (pid reuse after reboot). */
  readonly staleTempMs?: number;
  /**
   * Worker threads for the batched calls (putVerifiedMany, getMany): each object's file calls run
   * there instead of on the event loop (default 0: in process; the daemon's chunk store uses them).
   */
  readonly ioThreads?: number;
}

export interface StoredObject {
  readonly digest: Digest;
  readonly size: number;
  /** Last access as recorded in the file's mtime (eviction touches it). */
  readonly mtimeMs: number;
}

export interface ObjectStoreStats {
  puts: number;
  putBytes: number;
  gets: number;
  corruptDeleted: number;
  noSpace: number;
}

/** What a verified file must still look like: a write or a replacement changes ctime. */
interface Identity {
  dev: number;
  ino: number;
  size: number;
  ctimeMs: number;
}

function sameIdentity(a: Identity, b: Identity): boolean {
  return a.dev === b.dev && a.ino === b.ino && a.size === b.size && a.ctimeMs === b.ctimeMs;
}

export class ObjectStore {
  readonly dir: string;
  readonly tmpDir: string;
  readonly #durable: boolean;
  readonly #fsync: boolean;
  readonly #log: Logger;
  readonly #verified = new Map<Digest, Identity>();
  readonly #io: ObjectIo;
  readonly stats: ObjectStoreStats = { puts: 0, putBytes: 0, gets: 0, corruptDeleted: 0, noSpace: 0 };

  private constructor(opts: ObjectStoreOptions) {
    this.dir = opts.dir;
    this.tmpDir = opts.tmpDir;
    this.#durable = opts.durable ?? false;
    this.#fsync = opts.fsync ?? true;
    this.#log = opts.logger ?? silentLogger;
    this.#io = new ObjectIo({ tmpDir: opts.tmpDir, fsync: this.#fsync, threads: opts.ioThreads ?? 0 });
  }

  /** Stop the io worker threads (calls after this run in process). */
  async close(): Promise<void> {
    await this.#io.close();
  }

  static async open(opts: ObjectStoreOptions): Promise<ObjectStore> {
    const s = new ObjectStore(opts);
    await privateDir(s.dir);
    await privateDir(s.tmpDir);
    await s.sweepTemp(opts.staleTempMs ?? 3600_000);
    return s;
  }

  pathOf(d: Digest): string {
    const hex = digestHex(d);
    return join(this.dir, digestAlgorithm(d), hex.slice(0, 2), hex.slice(2));
  }

  /** Store verified bytes. Returns false if the object was already present. Throws DigestMismatchError / CacheError. */
  async put(d: Digest, data: Uint8Array): Promise<boolean> {
    const actual = DigestHasher.for(d).update(data).digest();
    if (actual !== d) throw new DigestMismatchError('object', d, actual, { chunk: d });
    if (await this.has(d)) return false;
    await this.#write(d, [data]);
    this.stats.puts++;
    this.stats.putBytes += data.length;
    return true;
  }

  /**
   * Store verified objects (one batch of file calls off the event loop when ioThreads > 0). Per
   * item: true if stored now, false if it was already present, or the CacheError its write failed
   * with (CACHE_NO_SPACE on a full disk; the temp file is gone). Never hashes: the type says the
   * decoder did.
   */
  async putVerifiedMany(items: ReadonlyArray<{ readonly digest: Digest; readonly data: VerifiedBytes }>): Promise<Array<boolean | CacheError>> {
    const got = await this.#io.putMany(items.map((it) => ({ target: this.pathOf(it.digest), data: it.data })));
    return got.map((r, i) => {
      if (r === 'present') return false;
      if (r === 'stored') {
        this.stats.puts++;
        this.stats.putBytes += items[i]!.data.length;
        return true;
      }
      const ce = this.#ioError(r, 'object store write', items[i]!.digest);
      if (ce.code === 'CACHE_NO_SPACE') this.stats.noSpace++;
      return ce;
    });
  }

  /**
   * Read and verify several objects (get() for many, the file calls and the hashing off the event
   * loop when ioThreads > 0). Per item: the bytes, undefined when absent or corrupt (deleted, warned),
   * or the CacheError the read failed with.
   */
  async getMany(digests: readonly Digest[]): Promise<Array<VerifiedBytes | undefined | CacheError>> {
    this.stats.gets += digests.length;
    const got = await this.#io.getMany(digests.map((digest) => ({ path: this.pathOf(digest), digest })));
    return Promise.all(
      got.map(async (r, i) => {
        const d = digests[i]!;
        if (r === 'absent') return undefined;
        // alreadyVerified: the io call hashed these bytes and reports `ok` only when they matched `d`
        if ('ok' in r) return alreadyVerified(r.ok);
        if ('corrupt' in r) {
          await this.#dropCorrupt(d, r.corrupt);
          return undefined;
        }
        return this.#ioError(r, 'object store read', d);
      }),
    );
  }

  #ioError(f: IoFailure, what: string, d: Digest): CacheError {
    return toCacheError(Object.assign(new Error(f.message), { code: f.code }), what, { chunk: d });
  }

  /**
   * Store a large object from a stream, hashing while writing. The temp file is renamed into place
   * only if the bytes hash to `d` (and have `size` bytes, when given).
   */
  async putStream(d: Digest, source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>, size?: number): Promise<void> {
    const hasher = DigestHasher.for(d);
    async function* hashing(): AsyncIterable<Uint8Array> {
      for await (const c of source) {
        hasher.update(c);
        yield c;
      }
    }
    const tmp = await this.#track(writeTemp(this.tmpDir, hashing(), this.#fsync));
    const actual = hasher.digest();
    if (actual !== d || (size !== undefined && hasher.bytes !== size)) {
      await unlink(tmp).catch(() => undefined);
      throw new DigestMismatchError(`object of ${hasher.bytes} bytes`, d, actual, { blob: d });
    }
    await this.#track(commitTemp(tmp, this.pathOf(d), this.#durable));
    this.stats.puts++;
    this.stats.putBytes += hasher.bytes;
  }

  async #write(d: Digest, chunks: Uint8Array[]): Promise<void> {
    const tmp = await this.#track(writeTemp(this.tmpDir, chunks, this.#fsync));
    await this.#track(commitTemp(tmp, this.pathOf(d), this.#durable));
  }

  async #track<T>(p: Promise<T>): Promise<T> {
    try {
      return await p;
    } catch (e) {
      const ce = toCacheError(e, 'object store write');
      if (ce.code === 'CACHE_NO_SPACE') this.stats.noSpace++;
      throw ce;
    }
  }

  /** Read and verify an object. Corrupt objects are deleted and reported as absent. */
  async get(d: Digest): Promise<VerifiedBytes | undefined> {
    this.stats.gets++;
    let data: Buffer;
    try {
      data = await readFile(this.pathOf(d));
    } catch (e) {
      if ((e as { code?: string }).code === 'ENOENT') return undefined;
      throw toCacheError(e, 'object store read', { chunk: d });
    }
    const actual = DigestHasher.for(d).update(data).digest();
    if (actual !== d) {
      await this.#dropCorrupt(d, actual);
      return undefined;
    }
    // alreadyVerified: just hashed to `d`
    return alreadyVerified(data);
  }

  async #dropCorrupt(d: Digest, actual: string): Promise<void> {
    this.stats.corruptDeleted++;
    this.#verified.delete(d);
    this.#log.warn('cache.object_corrupt', { digest: d, actual });
    await unlink(this.pathOf(d)).catch(() => undefined);
  }

  /**
   * Read `[offset, offset+length)` of a (large) object. The whole object is hashed once per process
   * before the first range is served. Returns undefined if the object is absent or corrupt.
   */
  async readRange(d: Digest, offset: number, length: number): Promise<Buffer | undefined> {
    let fh;
    try {
      fh = await open(this.pathOf(d), 'r');
    } catch (e) {
      if ((e as { code?: string }).code === 'ENOENT') return undefined;
      throw toCacheError(e, 'object store read', { blob: d });
    }
    try {
      const st = await fh.stat();
      const id: Identity = { dev: st.dev, ino: st.ino, size: st.size, ctimeMs: st.ctimeMs };
      const known = this.#verified.get(d);
      if (!known || !sameIdentity(known, id)) {
        const h = DigestHasher.for(d);
        const piece = Buffer.allocUnsafe(1 << 20);
        for (let pos = 0; ; ) {
          const { bytesRead } = await fh.read(piece, 0, piece.length, pos);
          if (bytesRead === 0) break;
          h.update(piece.subarray(0, bytesRead));
          pos += bytesRead;
        }
        const actual = h.digest();
        if (actual !== d) {
          await this.#dropCorrupt(d, actual);
          return undefined;
        }
        this.#verified.set(d, id);
      }
      const end = Math.min(st.size, offset + length);
      const n = Math.max(0, end - offset);
      const buf = Buffer.allocUnsafe(n);
      let done = 0;
      while (done < n) {
        const { bytesRead } = await fh.read(buf, done, n - done, offset + done);
        if (bytesRead === 0) break;
        done += bytesRead;
      }
      return done === n ? buf : buf.subarray(0, done);
    } finally {
      await fh.close();
    }
  }

  async has(d: Digest): Promise<boolean> {
    return (await this.stat(d)) !== undefined;
  }

  async stat(d: Digest): Promise<{ size: number; mtimeMs: number } | undefined> {
    try {
      const st = await stat(this.pathOf(d));
      return st.isFile() ? { size: st.size, mtimeMs: st.mtimeMs } : undefined;
    } catch {
      return undefined;
    }
  }

  /**
   * Remove an object; returns the bytes freed (0 if it was absent). A failed unlink (EACCES, EBUSY,
   * EIO) rejects with the errno: the caller decides whether a left-behind object deserves a warn.
   */
  async delete(d: Digest): Promise<number> {
    const st = await this.stat(d);
    if (!st) return 0;
    this.#verified.delete(d);
    try {
      await unlink(this.pathOf(d));
      return st.size;
    } catch (e) {
      if ((e as { code?: string }).code === 'ENOENT') return 0;
      throw e;
    }
  }

  /**
   * Record an access time in the object's mtime (used by eviction; survives restarts). utimes
   * changes ctime, so the verified identity is carried over to the new ctime only if the file
   * still had exactly the identity that was verified (same ctime before the touch): a file
   * written to behind our back — even to the same size — stays unverified and is re-hashed.
   * (An edit landing between the fstat and the futimes below is not seen; the cache dir is 0700.)
   */
  async touch(d: Digest, timeMs: number): Promise<void> {
    const t = new Date(timeMs);
    let fh;
    try {
      fh = await open(this.pathOf(d), 'r');
    } catch {
      return; // evicted or never stored: nothing to touch
    }
    try {
      const before = await fh.stat();
      const known = this.#verified.get(d);
      const intact = known !== undefined && sameIdentity(known, { dev: before.dev, ino: before.ino, size: before.size, ctimeMs: before.ctimeMs });
      await fh.utimes(t, t);
      if (intact) {
        const after = await fh.stat();
        this.#verified.set(d, { ...known, ctimeMs: after.ctimeMs });
      } else {
        this.#verified.delete(d);
      }
    } catch {
      this.#verified.delete(d);
    } finally {
      await fh.close();
    }
  }

  /** Every object in the store (unverified listing, for GC and status). */
  async *list(): AsyncIterable<StoredObject> {
    for (const alg of await readdirOrEmpty(this.dir)) {
      for (const shard of await readdirOrEmpty(join(this.dir, alg))) {
        for (const rest of await readdirOrEmpty(join(this.dir, alg, shard))) {
          const d = `${alg}:${shard}${rest}`;
          if (!isDigest(d)) continue;
          try {
            const st = await stat(join(this.dir, alg, shard, rest));
            if (st.isFile()) yield { digest: d as Digest, size: st.size, mtimeMs: st.mtimeMs };
          } catch {
            // removed concurrently
          }
        }
      }
    }
  }

  async usage(): Promise<{ objects: number; bytes: number }> {
    let objects = 0;
    let bytes = 0;
    for await (const o of this.list()) {
      objects++;
      bytes += o.size;
    }
    return { objects, bytes };
  }

  /** Stage verified objects whose provenance is not yet confirmed; commit() makes them visible. */
  createStaging(): Staging {
    return new Staging(this);
  }

  /** @internal used by Staging */
  async writeStagedTemp(d: Digest, data: Uint8Array): Promise<string> {
    const actual = DigestHasher.for(d).update(data).digest();
    if (actual !== d) throw new DigestMismatchError('staged object', d, actual, { chunk: d });
    return this.#track(writeTemp(this.tmpDir, [data], this.#fsync));
  }

  /** @internal used by Staging */
  async commitStagedTemp(tmp: string, d: Digest, size: number): Promise<void> {
    if (await this.has(d)) {
      await unlink(tmp).catch(() => undefined);
      return;
    }
    await this.#track(commitTemp(tmp, this.pathOf(d), this.#durable));
    this.stats.puts++;
    this.stats.putBytes += size;
  }

  private async sweepTemp(staleMs: number): Promise<void> {
    const now = Date.now();
    for (const name of await readdirOrEmpty(this.tmpDir)) {
      const m = /^[a-z]+-(\d+)-[0-9a-f]+\.tmp$/.exec(name);
      const p = join(this.tmpDir, name);
      let remove = true;
      if (m) {
        const pid = Number(m[1]);
        if (pid !== process.pid && pidAlive(pid)) {
          const st = await stat(p).catch(() => undefined);
          remove = st !== undefined && now - st.mtimeMs > staleMs;
        }
      }
      if (remove) {
        this.#log.info('cache.tmp_swept', { file: p });
        await rm(p, { force: true, recursive: true }).catch(() => undefined);
      }
    }
  }
}

/**
 * Objects written during a pass whose overall verification is still pending (plain layers: each
 * chunk hashes to its own digest, but the blob digest / diffID are only known at the end). Files sit
 * in the temp dir until commit(); discard() (or a crash, via the startup sweep) removes them.
 * Once a write fails for lack of space, further adds are dropped (caching is best effort).
 */
export class Staging {
  readonly #store: ObjectStore;
  readonly #files = new Map<Digest, { tmp: string; size: number }>();
  #disabled = false;
  bytes = 0;
  constructor(store: ObjectStore) {
    this.#store = store;
  }
  get disabled(): boolean {
    return this.#disabled;
  }
  async add(d: Digest, data: Uint8Array): Promise<void> {
    if (this.#disabled || this.#files.has(d)) return;
    try {
      const tmp = await this.#store.writeStagedTemp(d, data);
      this.#files.set(d, { tmp, size: data.length });
      this.bytes += data.length;
    } catch (e) {
      if (e instanceof DigestMismatchError) throw e;
      this.#disabled = true;
      throw e;
    }
  }
  /** Move every staged object into the store. Returns what was committed (digest, size). */
  async commit(): Promise<[Digest, number][]> {
    const done: [Digest, number][] = [];
    try {
      for (const [d, f] of this.#files) {
        this.#files.delete(d);
        await this.#store.commitStagedTemp(f.tmp, d, f.size);
        done.push([d, f.size]);
      }
    } finally {
      await this.discard();
    }
    return done;
  }
  async discard(): Promise<void> {
    for (const [d, f] of this.#files) {
      this.#files.delete(d);
      await unlink(f.tmp).catch(() => undefined);
    }
  }
}

async function readdirOrEmpty(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch {
    return [];
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as { code?: string }).code === 'EPERM';
  }
}
