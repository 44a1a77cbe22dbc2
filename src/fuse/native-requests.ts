/**
 * The requests C hands to JS (its misses), answered from the AlsTree: lookups and attributes of the
 * control namespace, `<key>/diff` (resolves the layer and publishes its table: native-slots.ts),
 * control-file opens and reads, `use` (create/mknod), rmdir, reads of layer content not in the local
 * cache, and the kernel's forgets. Every request with an id is answered exactly once through `guard`
 * (errno on throw, our deadline); notifications (id 0) are never answered.
 */
import { constants as fsConstants } from 'node:fs';
import { constants } from 'node:os';
import type { Digest } from '../core/digest.js';
import type { Logger } from '../core/log.js';
import type { NativeAttr, NativeBinding, NativeHandle } from '../../native/index.js';
import { guard, type FsStat, type FuseCaller, type FuseOps, type OpContext, type OpTimeouts } from './adapter.js';
import type { AlsTree, Where } from './als-tree.js';
import { FuseError } from './errors.js';
import { childPath, type ControlNodes } from './native-control-nodes.js';
import type { LayerSlots } from './native-slots.js';

const E = constants.errno;
/** A layer node's id is slot·2^32 + its index + 1; ids below 2^32 are control nodes. */
export const SLOT = 2 ** 32;
/** Request kinds (native/src/als.h enum als_op). */
const OP = { lookup: 1, getattr: 2, readdir: 3, open: 4, read: 5, release: 6, create: 7, rmdir: 8, readMiss: 9, forget: 10, slotFreed: 11 } as const;
const NO_NAME = Buffer.alloc(0);

export function attrOf(st: FsStat): NativeAttr {
  return { mode: st.mode, uid: st.uid, gid: st.gid, size: st.size, nlink: st.nlink, ino: st.ino, rdev: st.rdev, mtime: st.mtime };
}

export interface NativeRequestsConfig {
  readonly n: NativeBinding;
  readonly h: NativeHandle;
  readonly tree: AlsTree;
  readonly controls: ControlNodes;
  readonly slots: LayerSlots;
  readonly logger: Logger;
  readonly timeouts: OpTimeouts;
  readonly controlTimeoutSec: number;
  readonly layerTimeoutSec: number;
  /** Entries whose lookup is the access check (`diff`, `info`, `blob`) get timeout 0 (NativeBackendOptions). */
  readonly checkEveryResolve: boolean;
}

/** A lookup's answer, before it is replied. */
interface Entry {
  readonly nodeid: number;
  readonly attr: NativeAttr | null;
  readonly timeout: number;
  readonly path: string;
}

export class NativeRequests {
  readonly #n: NativeBinding;
  readonly #h: NativeHandle;
  readonly #tree: AlsTree;
  readonly #ops: FuseOps;
  readonly #controls: ControlNodes;
  readonly #slots: LayerSlots;
  readonly #logger: Logger;
  readonly #t: OpTimeouts;
  readonly #ctlTimeout: number;
  readonly #layerTimeout: number;
  readonly #checkEveryResolve: boolean;

  constructor(c: NativeRequestsConfig) {
    this.#n = c.n;
    this.#h = c.h;
    this.#tree = c.tree;
    this.#ops = c.tree;
    this.#controls = c.controls;
    this.#slots = c.slots;
    this.#logger = c.logger;
    this.#t = c.timeouts;
    this.#ctlTimeout = c.controlTimeoutSec;
    this.#layerTimeout = c.layerTimeoutSec;
    this.#checkEveryResolve = c.checkEveryResolve;
  }

  /** One request from C (NativeDispatch); `id` 0 = a notification. Never throws, never leaves a request unanswered. */
  dispatch(
    id: number, op: number, nodeid: number, a: number, b: number, c: number, d: number,
    uid: number, gid: number, pid: number, _plus: number, name: Buffer | undefined,
  ): void {
    const caller = { uid, gid, pid };
    try {
      switch (op) {
        case OP.lookup: return this.#lookup(id, nodeid, name ?? NO_NAME, caller);
        case OP.getattr: return this.#getattr(id, nodeid, caller);
        case OP.readdir: return this.#readdir(id, nodeid, caller);
        case OP.open: return this.#open(id, nodeid, a, caller);
        case OP.read: return this.#read(id, nodeid, a, b, c, caller);
        case OP.release: return this.#release(nodeid, a);
        case OP.forget: return this.#controls.forgot(nodeid, a);
        case OP.slotFreed: return this.#slots.freed(a);
        case OP.create: return this.#create(id, nodeid, name ?? NO_NAME, caller);
        case OP.rmdir: return this.#rmdir(id, nodeid, name ?? NO_NAME, caller);
        case OP.readMiss: return this.#readMiss(id, a, b, c, d, name ?? NO_NAME, caller);
        default:
          if (id !== 0) this.#replyErr(id, -E.ENOSYS);
      }
    } catch (e) {
      // pathOf on a forgotten node, or a bug: never leave the request unanswered.
      if (id !== 0) this.#replyErr(id, e instanceof FuseError && e.code === 'ENOENT' ? -E.ENOENT : -E.EIO);
    }
  }

  #replyErr(id: number, ret: number): void {
    this.#n.replyErr(this.#h, id, ret < 0 ? -ret : E.EIO);
  }

  #lookup(id: number, parent: number, name: Buffer, caller: FuseCaller): void {
    const path = childPath(this.#controls.pathOf(parent), name);
    guard(this.#logger, 'lookup', path, this.#t.lookupMs, (ctx) => this.#entryOf(path, parent, ctx), (ret, v) => {
      if (ret !== 0 || !v) return this.#replyErr(id, ret);
      // Control numbers are hashed (inodes.ts): a clash with another held path is refused, never aliased.
      if (v.nodeid < SLOT && !this.#controls.canHold(v.nodeid, v.path)) return this.#replyErr(id, -E.EIO);
      // Layer ids are counted in C; a control id is remembered only if the kernel took it.
      if (this.#n.replyEntry(this.#h, id, v.nodeid, v.attr, v.timeout) && v.nodeid < SLOT) this.#controls.held(v.nodeid, v.path);
    }, caller);
  }

  /** `<key>/diff` is its layer table's root (attributes from C); anything else a control node. */
  async #entryOf(path: string, parent: number, ctx: OpContext): Promise<Entry> {
    const w = this.#tree.where(path);
    if (w.kind === 'diff' && w.rel === '') {
      const slot = await this.#slotOf(w.ref, w.key, path, parent, ctx);
      return { nodeid: slot * SLOT + 1, attr: null, timeout: this.#resolveTimeout(this.#layerTimeout), path };
    }
    const st = await this.#ops.getattr(path, ctx);
    return { nodeid: st.ino, attr: attrOf(st), timeout: this.#controlTimeout(w), path };
  }

  /**
   * `<ref>` dirs and `<key>` dirs of layers not served are answered with timeout 0: the kernel drops
   * such a dentry on its last put and FORGETs the id, so made-up names looked up by anyone leave
   * nothing behind (audit H2). A held `diff` pins its parents anyway.
   */
  #controlTimeout(w: Where): number {
    if (w.kind === 'ref') return 0;
    if (w.kind === 'root' || w.kind === 'diff') return this.#ctlTimeout;
    if (!this.#tree.isServed(w.ref, w.key)) return 0;
    return w.kind === 'info' || w.kind === 'blob' ? this.#resolveTimeout(this.#ctlTimeout) : this.#ctlTimeout;
  }

  /** Slot of (ref, key): resolves the layer (the tree checks the caller every time) and publishes its table once. */
  async #slotOf(ref: string | undefined, key: Digest, path: string, parent: number, ctx: OpContext): Promise<number> {
    const served = await this.#tree.served(ref, key, path, ctx);
    if (!served) throw new FuseError('ENOENT', 'layer not served', { entry: path, layer: key });
    return this.#slots.slotOf(ref, key, served.tree, parent);
  }

  /** Entries whose lookup is the access check: cached only when the kernel enforces the same policy. */
  #resolveTimeout(t: number): number {
    return this.#checkEveryResolve ? 0 : t;
  }

  #getattr(id: number, nodeid: number, caller: FuseCaller): void {
    const path = this.#controls.pathOf(nodeid);
    guard(this.#logger, 'getattr', path, this.#t.lookupMs, (ctx) => this.#ops.getattr(path, ctx),
      (ret, st) => (ret === 0 && st ? this.#n.replyAttr(this.#h, id, attrOf(st), this.#ctlTimeout) : this.#replyErr(id, ret)), caller);
  }

  #readdir(id: number, nodeid: number, caller: FuseCaller): void {
    const path = this.#controls.pathOf(nodeid);
    guard(this.#logger, 'readdir', path, this.#t.lookupMs, (ctx) => this.#ops.readdir(path, ctx), (ret, v) => {
      if (ret !== 0 || !v) return this.#replyErr(id, ret);
      this.#n.replyDir(this.#h, id, v.names.map((nm, i) => [Buffer.from(nm, 'latin1'), v.stats[i]!.ino, v.stats[i]!.mode] as const));
    }, caller);
  }

  #open(id: number, nodeid: number, flags: number, caller: FuseCaller): void {
    const path = this.#controls.pathOf(nodeid);
    guard(this.#logger, 'open', path, this.#t.lookupMs, (ctx) => this.#ops.open(path, flags, ctx), (ret, fh) => {
      if (ret !== 0 || fh === undefined) return this.#replyErr(id, ret);
      if (!this.#n.replyOpen(this.#h, id, fh, true)) this.#tree.release(path, fh);
    }, caller);
  }

  /** A control file's read (`info`, `blob`). */
  #read(id: number, nodeid: number, fh: number, offset: number, length: number, caller: FuseCaller): void {
    const path = this.#controls.pathOf(nodeid);
    guard(this.#logger, 'read', path, this.#t.readMs, (ctx) => this.#readControl(path, fh, offset, length, ctx),
      (ret, buf) => (ret === 0 && buf ? this.#n.replyData(this.#h, id, buf) : this.#replyErr(id, ret)), caller);
  }

  /** fh 0: the mount is in no-open mode (the kernel opened the file without us): open it for this read. */
  async #readControl(path: string, fh: number, offset: number, length: number, ctx: OpContext): Promise<Buffer> {
    if (fh !== 0) return this.#ops.read(path, fh, offset, length, ctx);
    const opened = await this.#ops.open(path, fsConstants.O_RDONLY, ctx);
    try {
      return await this.#ops.read(path, opened, offset, length, ctx);
    } finally {
      this.#tree.release(path, opened);
    }
  }

  /** Notification: a control file's handle is closed. */
  #release(nodeid: number, fh: number): void {
    const path = this.#controls.find(nodeid);
    if (path !== undefined) this.#tree.release(path, fh);
  }

  /** The tree answers `use` (create/mknod) and rmdir with an error (EIO should it ever succeed). */
  #create(id: number, parent: number, name: Buffer, caller: FuseCaller): void {
    const path = childPath(this.#controls.pathOf(parent), name);
    guard(this.#logger, 'create', path, this.#t.defaultMs, (ctx) => this.#ops.create(path, 0o644, ctx),
      (ret) => this.#replyErr(id, ret === 0 ? -E.EIO : ret), caller);
  }

  #rmdir(id: number, parent: number, name: Buffer, caller: FuseCaller): void {
    const path = childPath(this.#controls.pathOf(parent), name);
    guard(this.#logger, 'rmdir', path, this.#t.defaultMs, (ctx) => this.#ops.rmdir(path, ctx),
      (ret) => this.#replyErr(id, ret === 0 ? -E.EIO : ret), caller);
  }

  /** A read of layer content C could not answer from the cache: node `index` of `slot`, at `rel`. */
  #readMiss(id: number, slot: number, offset: number, length: number, index: number, name: Buffer, caller: FuseCaller): void {
    const layer = this.#slots.layer(slot);
    const rel = name.toString('latin1');
    if (!layer) return this.#replyErr(id, -E.EIO);
    const layerIndex = layer.tree.layer.index;
    if (!(index >= 0 && index < layerIndex.nodeCount)) return this.#replyErr(id, -E.EIO);
    const node = layerIndex.node(index + 1);
    guard(this.#logger, 'read', rel, this.#t.readMs, (ctx) => layer.tree.readParts(node, rel, offset, length, ctx.signal),
      (ret, bufs) => (ret === 0 && bufs ? this.#replyParts(id, bufs) : this.#replyErr(id, ret)), caller);
  }

  /** A read's chunk pieces go out as they are (writev), not copied into one buffer first. */
  #replyParts(id: number, bufs: readonly Buffer[]): void {
    if (bufs.length <= 256) this.#n.replyDataV(this.#h, id, bufs);
    else this.#n.replyData(this.#h, id, Buffer.concat(bufs));
  }
}
