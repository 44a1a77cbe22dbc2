/**
 * The only file that knows about fuse-native. Everything above it speaks `FuseOps`: path-based,
 * promise-returning handlers that throw LazyAlsErrors. Paths, directory entry names and link targets
 * in FuseOps are ByteStrings (names are bytes, formats/byte-string.ts); fuse-native hands over and
 * takes UTF-8-decoded JS strings, so this file converts both ways. A name that is not valid UTF-8
 * cannot pass through fuse-native unchanged (it arrives and leaves with U+FFFD): a limit of this
 * backend, not of the layer model. A future native binding (libfuse3 low-level,
 * see docs/native.md) replaces this file and keeps FuseOps.
 *
 * fuse-native facts this file works around (measured in docs/native.md, re-checked by test/fuse):
 *  - a handler that throws kills the process and leaves an ENOTCONN mount, and a handler that never
 *    answers holds a FUSE thread until fuse-native's 15 s default timeout. So every call goes
 *    through `guard`: exactly one reply, a thrown error or rejection becomes an errno (EIO + one log
 *    line when it is not an expected answer), and our own per-op deadline (configurable; lookups
 *    that resolve from a registry need more than 15 s) answers ETIMEDOUT and aborts the work.
 *    fuse-native's own timer is set above ours as a backstop.
 *  - options it does not expose (use_ino, suid, negative_timeout) are smuggled through `fsname`,
 *    which it pastes unescaped into the `-o` string.
 *  - getxattr/listxattr never see the caller's buffer size through the public ops, so the
 *    size-probe/ERANGE protocol is implemented by overriding the two `_op_*` methods, which do see
 *    the buffer.
 *  - entry/attr timeouts are per mount (libfuse 2 high-level API): one value for control nodes and
 *    layer content alike; `ttl` hints in FsStat are for a binding that can do better.
 *  - stat fields cross as uint32 (ino, rdev, nlink, mode) and times as milliseconds.
 */
import { createRequire } from 'node:module';
import { constants } from 'node:os';
import type { Logger } from '../core/log.js';
import { byteStringFromText, toText, type ByteString } from '../formats/byte-string.js';
import { mountOptionList, type AccessPolicy } from './access-policy.js';
import { errnoOf, isExpectedFsAnswer } from './errno.js';
import { FuseError } from './errors.js';
import { remountSuid } from './mount-flags.js';

const E = constants.errno;

/** Attributes as fuse-native takes them (times in ms since the epoch). */
export interface FsStat {
  mode: number;
  uid: number;
  gid: number;
  size: number;
  nlink: number;
  ino: number;
  rdev: number;
  blocks: number;
  blksize: number;
  atime: number;
  mtime: number;
  ctime: number;
}

/** st_blocks counts 512-byte units whatever the filesystem's block size (stat(2)). */
export function statBlocks(size: number): number {
  return Math.ceil(size / 512);
}

export interface FsStatfs {
  bsize: number;
  frsize: number;
  blocks: number;
  bfree: number;
  bavail: number;
  files: number;
  ffree: number;
  favail: number;
  fsid: number;
  flag: number;
  namemax: number;
}

/** Who made the request, when the backend knows (the native backend does; fuse-native does not). */
export interface FuseCaller {
  readonly uid: number;
  readonly gid: number;
  readonly pid: number;
}

export interface OpContext {
  /** Aborted when the op's deadline passes (the kernel has been answered ETIMEDOUT). */
  readonly signal: AbortSignal;
  /** The calling process's ids, for backends that know them (fuse-native does not); AccessPolicy checks them. */
  readonly caller?: FuseCaller;
}

type R<T> = T | Promise<T>;

/** Mutating operations; the filesystem answers them all in one place (EROFS, mostly). */
export type WriteOp =
  | 'write' | 'truncate' | 'ftruncate' | 'utimens' | 'chown' | 'chmod' | 'setxattr' | 'removexattr'
  | 'unlink' | 'rename' | 'link' | 'symlink' | 'mkdir';

export interface FuseOps {
  getattr(path: string, ctx: OpContext): R<FsStat>;
  readdir(path: string, ctx: OpContext): R<{ names: string[]; stats: FsStat[] }>;
  readlink(path: string, ctx: OpContext): R<string>;
  /** undefined ⇒ ENODATA. */
  getxattr(path: string, name: string, ctx: OpContext): R<Buffer | undefined>;
  listxattr(path: string, ctx: OpContext): R<string[]>;
  open(path: string, flags: number, ctx: OpContext): R<number>;
  release(path: string, fh: number): R<void>;
  /** Returns at most `length` bytes; fewer only at EOF. */
  read(path: string, fh: number, offset: number, length: number, ctx: OpContext): R<Buffer>;
  create(path: string, mode: number, ctx: OpContext): R<number>;
  mknod(path: string, mode: number, dev: number, ctx: OpContext): R<void>;
  rmdir(path: string, ctx: OpContext): R<void>;
  statfs(path: string, ctx: OpContext): R<FsStatfs>;
  access(path: string, mode: number, ctx: OpContext): R<void>;
  /** Every other mutation; must throw (EROFS, ENOENT…). */
  mutate(op: WriteOp, path: string): R<never>;
}

export interface OpTimeouts {
  /** getattr = lookup: may resolve a layer from a registry. */
  readonly lookupMs: number;
  /** read: may fetch chunks from a registry. */
  readonly readMs: number;
  /** Everything else. */
  readonly defaultMs: number;
}

export interface MountOptions {
  readonly mountpoint: string;
  readonly logger: Logger;
  readonly timeouts: OpTimeouts;
  /** Kernel entry/attr cache, seconds (one value for the whole mount with fuse-native). */
  readonly entryTimeoutSec: number;
  readonly attrTimeoutSec: number;
  readonly allowOther: boolean;
  /** Honour setuid bits of layer files (root mounts only). */
  readonly suid: boolean;
  /** Who may resolve layers: fuse-native enforces it through control-dir modes only. */
  readonly policy: AccessPolicy;
  readonly debug?: boolean;
}

export interface MountHandle {
  readonly mountpoint: string;
  /** Unmount (lazy, via fusermount -uz) and stop serving. Idempotent. */
  unmount(): Promise<void>;
}

// --- fuse-native typing (it ships none) ---------------------------------------------------------
type Signal = (ret: number, ...rest: unknown[]) => void;
type Cb = (ret: number | null, ...values: unknown[]) => void;
interface FuseInstance {
  ops: Record<string, unknown>;
  mount(cb: (err: Error | null) => void): void;
  unmount(cb: (err: Error | null) => void): void;
}
type FuseCtor = new (mnt: string, ops: Record<string, unknown>, opts: Record<string, unknown>) => FuseInstance;

let fuseClass: FuseCtor | undefined;
function loadFuse(): FuseCtor {
  if (fuseClass) return fuseClass;
  const Base = createRequire(import.meta.url)('fuse-native') as FuseCtor;
  // See the essay: these two overrides see the caller's buffer and can answer size probes and ERANGE.
  class LazyAlsFuse extends Base {
    _op_getxattr(signal: Signal, path: string, name: string, valueBuf: Buffer, _position: number): void {
      (this.ops['getxattrSized'] as (p: string, n: string, size: number, cb: (ret: number, value?: Buffer) => void) => void)(
        path, name, valueBuf.length, (ret, value) => {
          if (ret === 0 && value) {
            if (valueBuf.length === 0) return signal(value.length, valueBuf.buffer);
            if (value.length > valueBuf.length) return signal(-E.ERANGE, valueBuf.buffer);
            value.copy(valueBuf);
            return signal(value.length, valueBuf.buffer);
          }
          return signal(ret === 0 ? -E.ENODATA : ret, valueBuf.buffer);
        });
    }
    _op_listxattr(signal: Signal, path: string, listBuf: Buffer): void {
      (this.ops['listxattrSized'] as (p: string, cb: (ret: number, names?: string[]) => void) => void)(path, (ret, names) => {
        if (ret !== 0 || !names) return signal(ret === 0 ? -E.EIO : ret, listBuf.buffer);
        const joined = Buffer.from(names.map((n) => n + '\0').join(''));
        if (listBuf.length === 0) return signal(joined.length, listBuf.buffer);
        if (joined.length > listBuf.length) return signal(-E.ERANGE, listBuf.buffer);
        joined.copy(listBuf);
        return signal(joined.length, listBuf.buffer);
      });
    }
  }
  fuseClass = LazyAlsFuse as unknown as FuseCtor;
  return fuseClass;
}

// --- guard ---------------------------------------------------------------------------------------

class LazyContext implements OpContext {
  #ac: AbortController | undefined;
  readonly caller?: FuseCaller;
  constructor(caller?: FuseCaller) {
    if (caller !== undefined) this.caller = caller;
  }
  get signal(): AbortSignal {
    this.#ac ??= new AbortController();
    return this.#ac.signal;
  }
  abort(reason: unknown): void {
    this.#ac?.abort(reason);
  }
}

/**
 * Run one handler and answer exactly once. `reply(ret, value)` gets 0 and the value, or -errno.
 * Never throws, never leaves the request unanswered past `timeoutMs`.
 */
export function guard<T>(
  logger: Logger,
  op: string,
  path: string,
  timeoutMs: number,
  run: (ctx: OpContext) => R<T>,
  reply: (ret: number, value?: T) => void,
  caller?: FuseCaller,
): void {
  let done = false;
  let timer: NodeJS.Timeout | undefined;
  const ctx = new LazyContext(caller);
  const answer = (ret: number, value?: T): void => {
    if (done) return;
    done = true;
    if (timer) clearTimeout(timer);
    try {
      reply(ret, value);
    } catch (e) {
      logger.error('fuse.reply_failed', { op, path, error: e });
    }
  };
  const fail = (e: unknown): void => {
    if (done) return; // late failure after a timeout: already answered and logged
    const errno = errnoOf(e);
    if (!isExpectedFsAnswer(e)) logger.error('fuse.op_failed', { op, path, errno, error: e });
    answer(-errno);
  };
  try {
    const r = run(ctx);
    if (r instanceof Promise) {
      timer = setTimeout(() => {
        const err = new FuseError('FUSE_TIMEOUT', `${op} did not finish within ${timeoutMs} ms`, { entry: path });
        logger.error('fuse.op_timeout', { op, path, timeoutMs });
        ctx.abort(err);
        answer(-E.ETIMEDOUT);
      }, timeoutMs);
      r.then((v) => answer(0, v), fail);
    } else {
      answer(0, r);
    }
  } catch (e) {
    fail(e);
  }
}

// --- mount ---------------------------------------------------------------------------------------

/**
 * `-o` options fuse-native has no switch for, appended to fsname (see essay). `suid` is listed but
 * does not survive libfuse 2's fusermount path (auto_unmount always takes it, and fusermount mounts
 * nosuid unless told otherwise, which libfuse 2 never does): see remountSuid.
 */
function smuggledOptions(opts: Pick<MountOptions, 'suid'>): string {
  const extra = ['use_ino', 'nodev'];
  if (opts.suid) extra.push('suid');
  return ['lazy-als', ...extra].join(',');
}

export async function mountFuse(fs: FuseOps, opts: MountOptions): Promise<MountHandle> {
  opts.policy.assertKernelEnforceable('fuse-native');
  const wanted = mountOptionList(opts);
  const Fuse = loadFuse();
  const t = opts.timeouts;
  const maxMs = Math.max(t.lookupMs, t.readMs, t.defaultMs);
  const fuse = new Fuse(opts.mountpoint, fuseNativeOps(fs, opts), {
    fsname: smuggledOptions(opts),
    allowOther: wanted.includes('allow_other'),
    autoUnmount: true,
    kernelCache: true,
    defaultPermissions: wanted.includes('default_permissions'),
    entryTimeout: opts.entryTimeoutSec,
    attrTimeout: opts.attrTimeoutSec,
    debug: opts.debug ?? false,
    force: false,
    mkdir: false,
    // Backstop only: guard answers first (see essay).
    timeout: { default: maxMs + 5000 },
  });
  await new Promise<void>((resolve, reject) =>
    fuse.mount((err) => (err ? reject(new FuseError('FUSE_MOUNT', `mount of ${opts.mountpoint} failed: ${err.message}`, {}, { cause: err })) : resolve())),
  );
  const handle = unmountHandle(fuse, opts);
  if (wanted.includes('suid')) {
    try {
      await remountSuid(opts.mountpoint, opts.logger);
    } catch (e) {
      await handle.unmount().catch(() => undefined);
      throw e;
    }
  }
  opts.logger.info('fuse.mounted', { mountpoint: opts.mountpoint, options: wanted });
  return handle;
}

/** A handle whose unmount runs once, however often it is called. */
function unmountHandle(fuse: InstanceType<ReturnType<typeof loadFuse>>, opts: MountOptions): MountHandle {
  let unmounting: Promise<void> | undefined;
  return {
    mountpoint: opts.mountpoint,
    unmount: () =>
      (unmounting ??= new Promise<void>((resolve, reject) =>
        fuse.unmount((err) => {
          if (err) return reject(new FuseError('FUSE_MOUNT', `unmount of ${opts.mountpoint} failed: ${err.message}`, {}, { cause: err }));
          opts.logger.info('fuse.unmounted', { mountpoint: opts.mountpoint });
          resolve();
        }),
      )),
  };
}

/** fuse-native's operation table: every call guarded (deadline, errno mapping), paths turned into ByteStrings. */
function fuseNativeOps(fs: FuseOps, opts: MountOptions): Record<string, unknown> {
  const { logger, timeouts: t } = opts;
  const g = <T>(op: string, path: string, ms: number, run: (ctx: OpContext) => R<T>, reply: (ret: number, value?: T) => void): void =>
    guard(logger, op, path, ms, run, reply);
  const d = t.defaultMs;
  /** fuse-native's UTF-8-decoded path → the ByteString FuseOps take. */
  const b = byteStringFromText;

  const ops: Record<string, unknown> = {
    getattr: (p: string, cb: Cb) => g('getattr', p, t.lookupMs, (c) => fs.getattr(b(p), c), (r, v) => cb(r, v)),
    readdir: (p: string, cb: Cb) =>
      g('readdir', p, t.lookupMs, (c) => fs.readdir(b(p), c), (r, v) => (r === 0 && v ? cb(0, v.names.map((n) => toText(n as ByteString)), v.stats) : cb(r))),
    readlink: (p: string, cb: Cb) => g('readlink', p, d, (c) => fs.readlink(b(p), c), (r, v) => cb(r, v === undefined ? v : toText(v as ByteString))),
    // Only presence matters for fuse-native's "implemented" table; the _op_ overrides call the *Sized variants.
    getxattr: true,
    listxattr: true,
    getxattrSized: (p: string, name: string, _size: number, cb: (ret: number, value?: Buffer) => void) =>
      g('getxattr', p, d, (c) => fs.getxattr(b(p), name, c), (r, v) => cb(r, v ?? undefined)),
    listxattrSized: (p: string, cb: (ret: number, names?: string[]) => void) =>
      g('listxattr', p, d, (c) => fs.listxattr(b(p), c), (r, v) => cb(r, v)),
    open: (p: string, flags: number, cb: Cb) => g('open', p, t.lookupMs, (c) => fs.open(b(p), flags, c), (r, v) => cb(r, v)),
    release: (p: string, fh: number, cb: Cb) => g('release', p, d, () => fs.release(b(p), fh), (r) => cb(r)),
    read: (p: string, fh: number, buf: Buffer, len: number, pos: number, cb: (ret: number) => void) =>
      g('read', p, t.readMs, (c) => fs.read(b(p), fh, pos, len, c), (r, v) => {
        // Copy only while the request is still ours: after a timeout reply the buffer belongs to libfuse again.
        if (r !== 0 || !v) return cb(r);
        const n = Math.min(v.length, len);
        v.copy(buf, 0, 0, n);
        cb(n);
      }),
    create: (p: string, mode: number, cb: Cb) => g('create', p, t.lookupMs, (c) => fs.create(b(p), mode, c), (r, v) => cb(r, v)),
    mknod: (p: string, mode: number, dev: number, cb: Cb) => g('mknod', p, t.lookupMs, (c) => fs.mknod(b(p), mode, dev, c), (r) => cb(r)),
    rmdir: (p: string, cb: Cb) => g('rmdir', p, d, (c) => fs.rmdir(b(p), c), (r) => cb(r)),
    statfs: (p: string, cb: Cb) => g('statfs', p, d, (c) => fs.statfs(b(p), c), (r, v) => cb(r, v)),
    access: (p: string, mode: number, cb: Cb) => g('access', p, d, (c) => fs.access(b(p), mode, c), (r) => cb(r)),
  };
  const writeOps: WriteOp[] = [
    'write', 'truncate', 'ftruncate', 'utimens', 'chown', 'chmod', 'setxattr', 'removexattr',
    'unlink', 'rename', 'link', 'symlink', 'mkdir',
  ];
  for (const op of writeOps) {
    ops[op] = (...args: unknown[]) => {
      const cb = args[args.length - 1] as (ret: number) => void;
      // symlink(target, linkpath) / link(src, dst): the path being created is the second one.
      const p = String(op === 'symlink' || op === 'link' ? args[1] : args[0]);
      g(op, p, d, () => fs.mutate(op, b(p)), (r) => cb(r));
    };
  }

  return ops;
}
