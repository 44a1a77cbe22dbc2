/**
 * Types of the native addon (build/Release/lazy_als_native.node, built by node-gyp from src/*.c).
 * The addon is loaded by exactly one module, src/fuse/native-backend.ts; these types are shared with
 * the native backend's parts (src/fuse/native-*.ts).
 */
export interface NativeHandle {
  readonly __brand: 'lazy-als-native-mount';
}

export interface NativeMountOptions {
  readonly mountpoint: string;
  /** The `-o` list, e.g. "allow_other,default_permissions,suid,auto_unmount" (max_read=1MiB is added). */
  readonly options: string;
  /** Content-addressed verified chunk objects (`<dir>/sha256/<2>/<62>`) that C may pread. */
  readonly objectsDir?: string;
  /** Entry/attr timeout for layer content (immutable). */
  readonly layerTimeoutSec: number;
  /** Default entry/attr timeout for control nodes. */
  readonly controlTimeoutSec: number;
  /** A request handed to JS is answered ETIMEDOUT after this long (backstop for JS's own deadline). */
  readonly missTimeoutMs: number;
  readonly debug?: boolean;
  /** Attributes of the mount root, answered in C and cached by the kernel for at most a second. */
  readonly rootAttr?: NativeAttr;
  /** Hand fully cached single-object files to the kernel (FUSE passthrough) when root; the caller decides the default. */
  readonly passthrough?: boolean;
  /** Layer slots at most (2..65,536, default 65,536; slot 0 is the control namespace). */
  readonly maxSlots?: number;
}

/** Request kinds handed to JS (native/src/als.h enum als_op): 1 lookup, 2 getattr, 3 readdir,
 *  4 open, 5 read (control file), 6 release (notification), 7 create/mknod, 8 rmdir, 9 read miss,
 *  10 forget of a control node (notification, a = count), 11 slot a freed (notification). */
export type NativeOp = 1 | 2 | 3 | 4 | 5 | 6 | 7 | 8 | 9 | 10 | 11;

/**
 * Called on the JS thread for every miss. `id` 0 = a notification (no reply). `name` is the child
 * name (lookup/create/rmdir) or the file's layer-relative path (ReadMiss), as raw bytes.
 */
export type NativeDispatch = (
  id: number, op: NativeOp, nodeid: number, a: number, b: number, c: number, d: number,
  uid: number, gid: number, pid: number, plus: number, name: Buffer | undefined,
) => void;

/** Attributes of a control node (times in ms since the epoch). */
export interface NativeAttr {
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  readonly size: number;
  readonly nlink: number;
  readonly ino: number;
  readonly rdev: number;
  readonly mtime: number;
}

export interface NativeStats {
  readonly ops: number;
  readonly misses: number;
  readonly cached_reads: number;
  readonly cached_bytes: number;
  readonly verified_objects: number;
  readonly verify_failures: number;
  readonly timeouts: number;
  readonly passthrough_opens: number;
  /** Chunk objects opened by path: verified fds are kept open between reads (fdcache.c). */
  readonly object_opens: number;
  readonly pending: number;
  readonly passthrough: boolean;
  /** The kernel opens files without asking (no passthrough on this mount: OPEN was answered ENOSYS). */
  readonly no_open: boolean;
  /** FORGETs of control nodes passed to JS. */
  readonly control_forgets: number;
  /** Retired slots freed (the kernel forgot every id). */
  readonly slots_freed: number;
  /** Slots holding a table: published, or retired and still held by the kernel. */
  readonly slots: number;
}

export interface NativeBinding {
  mount(options: NativeMountOptions, dispatch: NativeDispatch): NativeHandle;
  /** Copy and check a layer table (src/fuse/layer-table.ts); returns its slot. Throws EBADTABLE. */
  publish(h: NativeHandle, table: Buffer, inoBase: number): number;
  /** Another slot over an already published table (same layer under another ref). */
  alias(h: NativeHandle, slot: number, inoBase: number): number;
  /** JS no longer serves the slot's layer: C frees it once the kernel forgot its ids (then op 11);
   *  the entry parent/name is invalidated in the kernel. False when the slot is unknown. */
  unpublish(h: NativeHandle, slot: number, parentNodeid: number, name: Buffer): boolean;
  /** After op 11: JS has forgotten the slot; its number may be reused. */
  slotReleased(h: NativeHandle, slot: number): void;
  /** sha256 digests (32 bytes each) of the chunk objects C served since the last call. */
  takeUsed(h: NativeHandle): Buffer;
  /**
   * The layer of `slot` does not match its blob: every slot over its table answers EIO to open
   * and read (cached objects included), and the kernel's cached pages of its files are dropped.
   */
  quarantine(h: NativeHandle, slot: number): boolean;
  /** Each returns false when the request was already answered (deadline passed, or unmounted);
   *  replyEntry also when the kernel did not take the entry (the caller was interrupted). */
  replyErr(h: NativeHandle, id: number, errno: number): boolean;
  /** nodeid ≥ 2^32 names a layer node (slot·2^32 + index + 1): its attributes come from the table.
   *  timeoutSec: entry and attr timeout for either kind. */
  replyEntry(h: NativeHandle, id: number, nodeid: number, attr: NativeAttr | null, timeoutSec: number): boolean;
  replyAttr(h: NativeHandle, id: number, attr: NativeAttr, timeoutSec: number): boolean;
  replyOpen(h: NativeHandle, id: number, fh: number, keepCache: boolean): boolean;
  replyData(h: NativeHandle, id: number, data: Buffer): boolean;
  /** The buffers' bytes in order (at most 256 buffers), cut at the requested size: no copy into one buffer. */
  replyDataV(h: NativeHandle, id: number, data: readonly Buffer[]): boolean;
  replyDir(h: NativeHandle, id: number, entries: readonly (readonly [Buffer, number, number])[]): boolean;
  /** Detach the mount, stop the FUSE threads, answer what is pending with EIO. Idempotent. */
  unmount(h: NativeHandle, connId: number): Promise<void>;
  stats(h: NativeHandle): NativeStats;
  /** null when the table is well-formed, else why not (for tests). */
  checkTable(table: Buffer): string | null;
}
