/**
 * The native backend: the only module that loads native/ (a libfuse3 low-level server in C).
 *
 * C threads answer everything inside a layer's `diff/` tree from the layer's table
 * (layer-table.ts): lookup, getattr, readdir(plus), readlink, xattrs, open, statfs, and reads whose
 * chunks are already in the object store (each object hashed once per process, then trusted while
 * its identity is unchanged). This module is called only for misses and answers them from the same
 * AlsTree the fuse-native backend uses, so both backends share one meaning of the namespace:
 *  - the control namespace (root, `<ref>`, `<key>`, `info`, `blob`): node ids below 2^32 are the
 *    AlsTree's control inode numbers, mapped back to paths here;
 *  - `<key>/diff`: resolves the layer (provider.lookup), publishes its table once, and answers with
 *    the table's root (node id slot·2^32 + 1);
 *  - reads of content not in the local cache: DiffTree.read (fetch, verify, cache);
 *  - `use` (create/mknod) and `rmdir`.
 * Every request handed over is answered through `guard` (one reply, errno on throw, our deadline);
 * C answers ETIMEDOUT itself if even that does not happen (missTimeoutMs), so the mount never wedges.
 */
import { constants as fsConstants, existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stat, writeFile } from 'node:fs/promises';
import { constants } from 'node:os';
import type { Digest } from '../core/digest.js';
import type { Logger } from '../core/log.js';
import type { NativeAttr, NativeBinding, NativeHandle, NativeStats } from '../../native/index.js';
import { guard, type FsStat, type FuseOps, type MountHandle, type OpContext, type OpTimeouts } from './adapter.js';
import type { AlsTree } from './als-tree.js';
import type { DiffTree } from './diff-tree.js';
import { FuseError } from './errors.js';
import { encodeLayerTable } from './layer-table.js';
import { remountSuid } from './mount-flags.js';

const E = constants.errno;
const SLOT = 2 ** 32;
const OP = { lookup: 1, getattr: 2, readdir: 3, open: 4, read: 5, release: 6, create: 7, rmdir: 8, readMiss: 9, forget: 10, slotFreed: 11 } as const;
const DIFF = Buffer.from('diff');

let binding: NativeBinding | undefined;
let loadError: Error | undefined;

/** The addon, or a FuseError saying why it cannot be loaded (not built: run scripts/setup.sh). */
export function loadNative(): NativeBinding {
  if (binding) return binding;
  try {
    binding = createRequire(import.meta.url)(addonPath()) as NativeBinding;
  } catch (e) {
    loadError = e as Error;
    throw new FuseError('FUSE_MOUNT', `the native backend is not built (${loadError.message}); run scripts/setup.sh or use --backend fuse-native`, {}, { cause: e });
  }
  return binding;
}

/** Why the addon could not be loaded (after nativeAvailable() said false), first line only. */
export function nativeUnavailableReason(): string | undefined {
  return loadError?.message.split('\n')[0];
}

const ADDON = join('native', 'build', 'Release', 'lazy_als_native.node');

/** The built addon in the nearest ancestor directory that has one (src/, dist/ and test bundles alike). */
function addonPath(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    // Once, at the first mount, before our own mount exists: a synchronous check is harmless here.
    if (existsSync(join(dir, ADDON))) return join(dir, ADDON);
    const up = dirname(dir);
    if (up === dir) return ADDON;
    dir = up;
  }
}

export function nativeAvailable(): boolean {
  try {
    loadNative();
    return true;
  } catch {
    return false;
  }
}

export interface NativeBackendOptions {
  readonly mountpoint: string;
  readonly logger: Logger;
  readonly timeouts: OpTimeouts;
  /** `-o` options (allow_other, default_permissions, suid, …); auto_unmount and sizes are added here. */
  readonly mountOptions: readonly string[];
  /** Timeout for control nodes (root, ref and key dirs, info, blob). */
  readonly controlTimeoutSec: number;
  /** Timeout for layer content: immutable, so long. */
  readonly layerTimeoutSec?: number;
  /**
   * The access policy is enforced only by the daemon (AccessPolicy.kernelEnforceable false): the
   * entries whose lookup resolves a layer (`diff`, `info`, `blob`) get timeout 0, so every path walk
   * through them reaches the check instead of the kernel's dentry cache.
   */
  readonly checkEveryResolve?: boolean;
  readonly objectsDir?: string;
  /** FUSE passthrough for fully cached files when privileged (default on; $LAZY_ALS_NATIVE_PASSTHROUGH=0 turns it off). */
  readonly passthrough?: boolean;
  readonly debug?: boolean;
  /** Layer slots at most (default and maximum 65,535; tests use a few to reach the bound). */
  readonly maxSlots?: number;
  /** Chunk objects C served, in batches (the eviction clock: LayerProvider.noteCachedReads). */
  readonly onCachedReads?: (digests: Digest[]) => void;
  /** How often those batches are collected (default 10 s). */
  readonly cachedReadsFlushMs?: number;
}

export interface NativeMountHandle extends MountHandle {
  stats(): NativeStats & { layers: number; controlNodes: number };
  /** Hand the chunk objects C served since the last batch to onCachedReads now. */
  flushCachedReads(): void;
}

interface SlotLayer {
  readonly tree: DiffTree;
  readonly key: Digest;
  /** The `<key>` control node the slot's `diff` entry hangs from (0: unknown). */
  parent: number;
  /** JS dropped it; C still answers the ids the kernel holds until it says SLOT_FREED. */
  retired: boolean;
}

/** A control node's path while the kernel holds its id (lookups it was given − forgets). */
interface ControlNode {
  readonly path: string;
  refs: number;
}

/** A read's chunk pieces go out as they are (writev), not copied into one buffer first. */
function replyParts(n: NativeBinding, h: NativeHandle, id: number, bufs: readonly Buffer[]): void {
  if (bufs.length <= 256) n.replyDataV(h, id, bufs);
  else n.replyData(h, id, Buffer.concat(bufs));
}

function attrOf(st: FsStat): NativeAttr {
  return { mode: st.mode, uid: st.uid, gid: st.gid, size: st.size, nlink: st.nlink, ino: st.ino, rdev: st.rdev, mtime: st.mtime };
}

/** Kernel device number of the mount (= its /sys/fs/fuse/connections id), from Node's st_dev. */
function connIdOf(dev: number): number {
  return (dev & 0xff) | ((dev >>> 12) & 0xfff00);
}

export async function mountNative(tree: AlsTree, o: NativeBackendOptions): Promise<NativeMountHandle> {
  const n = loadNative();
  const ops: FuseOps = tree;
  const { logger, timeouts: t } = o;
  const ctlTimeout = o.controlTimeoutSec;
  const layerTimeout = o.layerTimeoutSec ?? 86_400;
  // Entries whose lookup is the access check: cached only when the kernel enforces the same policy.
  const resolveTimeout = (t: number): number => (o.checkEveryResolve ? 0 : t);
  // Bounded by what the kernel holds: an entry goes with the FORGET of its last lookup.
  const controlPaths = new Map<number, ControlNode>([[1, { path: '/', refs: 1 }]]);
  const slotByLayer = new Map<string, number>(); // "<ref>/<key>" → slot (published, not retired)
  const slotByKey = new Map<Digest, number>(); // key → a published slot whose table aliases may share
  const layers = new Map<number, SlotLayer>(); // every slot C still has, retired ones included
  const watched = new WeakSet<object>(); // layers whose quarantine reaches C
  let h: NativeHandle | undefined;

  const pathOf = (nodeid: number): string => {
    const p = controlPaths.get(nodeid);
    if (p === undefined) throw new FuseError('ENOENT', 'unknown control node', { entry: String(nodeid) });
    return p.path;
  };
  const heldControl = (nodeid: number, path: string): void => {
    const c = controlPaths.get(nodeid);
    if (c && c.path === path) c.refs++;
    else controlPaths.set(nodeid, { path, refs: 1 });
  };
  const forgotControl = (nodeid: number, n: number): void => {
    const c = controlPaths.get(nodeid);
    if (!c || nodeid === 1) return;
    c.refs -= n;
    if (c.refs <= 0) controlPaths.delete(nodeid);
  };

  /** The tree dropped (ref, key): retire its slot (C frees it once the kernel forgot its ids). */
  const unpublish = (ref: string | undefined, key: Digest): void => {
    const lk = (ref ?? '') + '/' + key;
    const slot = slotByLayer.get(lk);
    if (slot === undefined || !h) return;
    slotByLayer.delete(lk);
    if (slotByKey.get(key) === slot) {
      const other = [...slotByLayer.values()].find((s) => layers.get(s)?.key === key);
      if (other !== undefined) slotByKey.set(key, other);
      else slotByKey.delete(key);
    }
    const l = layers.get(slot);
    if (!l) return;
    l.retired = true;
    n.unpublish(h, slot, l.parent, DIFF);
    logger.debug('fuse.native_unpublish', { layer: key, slot });
  };
  tree.setDropListener(unpublish);
  const child = (parent: string, name: Buffer): string => (parent === '/' ? '/' : parent + '/') + name.toString('latin1');

  /** Slot of (ref, key): resolves the layer (the tree checks the caller every time) and publishes its table once. */
  const slotOf = async (ref: string | undefined, key: Digest, path: string, parent: number, ctx: OpContext): Promise<number> => {
    const served = await tree.served(ref, key, path, ctx);
    if (!served) throw new FuseError('ENOENT', 'layer not served', { entry: path, layer: key });
    const lk = (ref ?? '') + '/' + key;
    const known = slotByLayer.get(lk);
    if (known !== undefined) {
      layers.get(known)!.parent = parent;
      return known;
    }
    const owner = slotByKey.get(key);
    let slot: number;
    if (owner !== undefined) {
      slot = n.alias(h!, owner, served.tree.base);
    } else {
      const table = encodeLayerTable(served.tree.layer.index, served.tree.ids);
      slot = n.publish(h!, table, served.tree.base);
      slotByKey.set(key, slot);
      // C serves cached objects without asking JS: the flag on the table (shared by its aliases) stops
      // that. Every slot C still has for this layer at that moment (numbers are reused: never one
      // remembered from now), once per layer object; a table published after it fired: below.
      const layer = served.tree.layer;
      if (!watched.has(layer)) {
        watched.add(layer);
        layer.onQuarantine?.(() => {
          for (const [s, l] of layers) {
            if (l.tree.layer !== layer || h === undefined) continue;
            try {
              n.quarantine(h, s);
            } catch (e) {
              logger.warn('fuse.native_quarantine_failed', { layer: key, error: e }); // unmounted meanwhile
            }
          }
        });
      }
      logger.debug('fuse.native_table', { layer: key, nodes: served.tree.layer.index.nodeCount, bytes: table.length });
    }
    slotByLayer.set(lk, slot);
    layers.set(slot, { tree: served.tree, key, parent, retired: false });
    // Quarantined before this table existed (dropped by rmdir/LRU, looked up again): the callback fired already.
    if (served.tree.layer.quarantined !== undefined) n.quarantine(h!, slot);
    return slot;
  };

  const replyErr = (id: number, ret: number): void => {
    n.replyErr(h!, id, ret < 0 ? -ret : E.EIO);
  };

  const dispatch = (
    id: number, op: number, nodeid: number, a: number, b: number, c: number, d: number,
    uid: number, gid: number, pid: number, _plus: number, name: Buffer | undefined,
  ): void => {
    const caller = { uid, gid, pid };
    try {
      switch (op) {
        case OP.lookup: {
          const path = child(pathOf(nodeid), name ?? Buffer.alloc(0));
          guard(logger, 'lookup', path, t.lookupMs, async (ctx) => {
            const w = tree.where(path);
            if (w.kind === 'diff' && w.rel === '') return { nodeid: (await slotOf(w.ref, w.key, path, nodeid, ctx)) * SLOT + 1, attr: null, timeout: resolveTimeout(layerTimeout), path };
            const st = await ops.getattr(path, ctx);
            return { nodeid: st.ino, attr: attrOf(st), timeout: w.kind === 'info' || w.kind === 'blob' ? resolveTimeout(ctlTimeout) : ctlTimeout, path };
          }, (ret, v) => {
            if (ret !== 0 || !v) return replyErr(id, ret);
            // Layer ids are counted in C; a control id is remembered only if the kernel took it.
            if (n.replyEntry(h!, id, v.nodeid, v.attr, v.timeout) && v.nodeid < SLOT) heldControl(v.nodeid, v.path);
          }, caller);
          return;
        }
        case OP.getattr: {
          const path = pathOf(nodeid);
          guard(logger, 'getattr', path, t.lookupMs, (ctx) => ops.getattr(path, ctx),
            (ret, st) => (ret === 0 && st ? n.replyAttr(h!, id, attrOf(st), ctlTimeout) : replyErr(id, ret)), caller);
          return;
        }
        case OP.readdir: {
          const path = pathOf(nodeid);
          guard(logger, 'readdir', path, t.lookupMs, (ctx) => ops.readdir(path, ctx), (ret, v) => {
            if (ret !== 0 || !v) return replyErr(id, ret);
            n.replyDir(h!, id, v.names.map((nm, i) => [Buffer.from(nm, 'latin1'), v.stats[i]!.ino, v.stats[i]!.mode] as const));
          }, caller);
          return;
        }
        case OP.open: {
          const path = pathOf(nodeid);
          guard(logger, 'open', path, t.lookupMs, (ctx) => ops.open(path, a, ctx), (ret, fh) => {
            if (ret !== 0 || fh === undefined) return replyErr(id, ret);
            if (!n.replyOpen(h!, id, fh, true)) tree.release(path, fh);
          }, caller);
          return;
        }
        case OP.read: {
          const path = pathOf(nodeid);
          // fh 0: the mount is in no-open mode (the kernel opened the file without us): open it for this read.
          const read = async (ctx: OpContext): Promise<Buffer> => {
            if (a !== 0) return ops.read(path, a, b, c, ctx);
            const fh = await ops.open(path, fsConstants.O_RDONLY, ctx);
            try {
              return await ops.read(path, fh, b, c, ctx);
            } finally {
              tree.release(path, fh);
            }
          };
          guard(logger, 'read', path, t.readMs, read, (ret, buf) => (ret === 0 && buf ? n.replyData(h!, id, buf) : replyErr(id, ret)), caller);
          return;
        }
        case OP.release: {
          const c = controlPaths.get(nodeid);
          if (c !== undefined) tree.release(c.path, a);
          return;
        }
        case OP.forget:
          forgotControl(nodeid, a);
          return;
        case OP.slotFreed: {
          // C freed a retired slot: forget it, then let C reuse the number (never before: a late
          // notification could otherwise hit a newer layer in the same slot).
          if (layers.get(a)?.retired) layers.delete(a);
          if (h) n.slotReleased(h, a);
          return;
        }
        case OP.create: {
          const path = child(pathOf(nodeid), name ?? Buffer.alloc(0));
          guard(logger, 'create', path, t.defaultMs, (ctx) => ops.create(path, 0o644, ctx), (ret) => replyErr(id, ret === 0 ? -E.EIO : ret), caller);
          return;
        }
        case OP.rmdir: {
          const path = child(pathOf(nodeid), name ?? Buffer.alloc(0));
          guard(logger, 'rmdir', path, t.defaultMs, (ctx) => ops.rmdir(path, ctx), (ret) => replyErr(id, ret === 0 ? -E.EIO : ret), caller);
          return;
        }
        case OP.readMiss: {
          const layer = layers.get(a);
          const rel = (name ?? Buffer.alloc(0)).toString('latin1');
          if (!layer) return replyErr(id, -E.EIO);
          const index = layer.tree.layer.index;
          if (!(d >= 0 && d < index.nodeCount)) return replyErr(id, -E.EIO);
          const node = index.node(d + 1);
          guard(logger, 'read', rel, t.readMs, (ctx) => layer.tree.readParts(node, rel, b, c, ctx.signal),
            (ret, bufs) => (ret === 0 && bufs ? replyParts(n, h!, id, bufs) : replyErr(id, ret)), caller);
          return;
        }
        default:
          if (id !== 0) replyErr(id, -E.ENOSYS);
      }
    } catch (e) {
      // pathOf on a forgotten node, or a bug: never leave the request unanswered.
      if (id !== 0) replyErr(id, e instanceof FuseError && e.code === 'ENOENT' ? -E.ENOENT : -E.EIO);
    }
  };

  const maxMs = Math.max(t.lookupMs, t.readMs, t.defaultMs);
  // The root is answered in C, cached by the kernel for at most a second (a dead daemon must soon show ENOTCONN).
  const root = ops.getattr('/', { signal: new AbortController().signal });
  if (root instanceof Promise) throw new FuseError('FUSE_MOUNT', 'the root attributes must be known synchronously', {});
  const options = [...o.mountOptions, 'auto_unmount', 'fsname=lazy-als', 'subtype=lazy-als'].join(',');
  try {
    h = n.mount(
      {
        mountpoint: o.mountpoint,
        options,
        ...(o.objectsDir !== undefined ? { objectsDir: o.objectsDir } : {}),
        layerTimeoutSec: layerTimeout,
        controlTimeoutSec: ctlTimeout,
        missTimeoutMs: maxMs + 5000,
        debug: o.debug ?? false,
        rootAttr: attrOf(root),
        // On by default (C uses it only as root, when the kernel accepts it; pread otherwise);
        // LAZY_ALS_NATIVE_PASSTHROUGH=0 turns it off.
        passthrough: o.passthrough ?? process.env['LAZY_ALS_NATIVE_PASSTHROUGH'] !== '0',
        ...(o.maxSlots !== undefined ? { maxSlots: o.maxSlots } : {}),
      },
      dispatch,
    );
  } catch (e) {
    throw new FuseError('FUSE_MOUNT', `mount of ${o.mountpoint} failed: ${(e as Error).message}`, {}, { cause: e });
  }
  const handle = h;
  // Never a synchronous syscall on our own mount from this thread: it would wait for itself.
  const connId = await stat(o.mountpoint).then((s) => connIdOf(s.dev), () => 0);
  // 1 MiB READs need a 1 MiB read-ahead window on the mount's bdi (root only; best effort).
  if (connId > 0) await writeFile(`/sys/class/bdi/0:${connId}/read_ahead_kb`, '1024').catch(() => undefined);
  logger.info('fuse.mounted', { mountpoint: o.mountpoint, backend: 'native' });
  // Reads C answers from cache objects reach the eviction clock in batches (a mark per chunk in C).
  const flushCachedReads = (): void => {
    if (!o.onCachedReads) return;
    const raw = n.takeUsed(handle);
    if (raw.length === 0) return;
    const digests: Digest[] = [];
    for (let i = 0; i + 32 <= raw.length; i += 32) digests.push(`sha256:${raw.toString('hex', i, i + 32)}` as Digest);
    try {
      o.onCachedReads(digests);
    } catch (e) {
      logger.warn('fuse.native_cached_reads_failed', { error: e });
    }
  };
  const usedTimer = o.onCachedReads ? setInterval(flushCachedReads, o.cachedReadsFlushMs ?? 10_000) : undefined;
  usedTimer?.unref();
  let unmounting: Promise<void> | undefined;
  const mounted = {
    mountpoint: o.mountpoint,
    stats: () => ({ ...n.stats(handle), layers: slotByLayer.size, controlNodes: controlPaths.size }),
    flushCachedReads,
    unmount: () =>
      (unmounting ??= (async () => {
        if (usedTimer) clearInterval(usedTimer);
        flushCachedReads();
        tree.setDropListener(undefined);
        await n.unmount(handle, connId);
        logger.info('fuse.unmounted', { mountpoint: o.mountpoint, backend: 'native' });
      })()),
  };
  // fusermount3 (auto_unmount) mounts nosuid unless told `suid`, and libfuse 3 does not pass it on.
  if (o.mountOptions.includes('suid')) {
    try {
      await remountSuid(o.mountpoint, logger);
    } catch (e) {
      await mounted.unmount().catch(() => undefined);
      throw e;
    }
  }
  return mounted;
}
