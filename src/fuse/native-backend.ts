/**
 * The native backend: the only module that loads native/ (a libfuse3 low-level server in C).
 *
 * C threads answer everything inside a layer's `diff/` tree from the layer's table
 * (layer-table.ts): lookup, getattr, readdir(plus), readlink, xattrs, open, statfs, and reads whose
 * chunks are already in the object store (each object hashed once per process, then trusted while
 * its identity is unchanged). JS is called only for misses and answers them from the same AlsTree
 * the fuse-native backend uses, so both backends share one meaning of the namespace:
 *  - the control namespace (root, `<ref>`, `<key>`, `info`, `blob`): node ids below 2^32 are the
 *    AlsTree's control inode numbers, mapped back to paths (native-control-nodes.ts);
 *  - `<key>/diff`: resolves the layer (provider.lookup), publishes its table once (native-slots.ts),
 *    and answers with the table's root (node id slot·2^32 + 1);
 *  - reads of content not in the local cache: DiffTree.read (fetch, verify, cache);
 *  - `use` (create/mknod) and `rmdir`.
 * Every request handed over is answered through `guard` (native-requests.ts: one reply, errno on
 * throw, our deadline); C answers ETIMEDOUT itself if even that does not happen (missTimeoutMs), so
 * the mount never wedges. This module loads the addon, mounts, and assembles those parts.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stat, writeFile } from 'node:fs/promises';
import type { Digest } from '../core/digest.js';
import type { Logger } from '../core/log.js';
import type { NativeBinding, NativeDispatch, NativeHandle, NativeStats } from '../../native/index.js';
import type { FuseOps, MountHandle, OpTimeouts } from './adapter.js';
import type { AlsTree } from './als-tree.js';
import { FuseError } from './errors.js';
import { remountSuid } from './mount-flags.js';
import { ControlNodes } from './native-control-nodes.js';
import { attrOf, NativeRequests } from './native-requests.js';
import { LayerSlots } from './native-slots.js';

let binding: NativeBinding | undefined;
let loadError: Error | undefined;

/** The addon, or a FuseError saying why it cannot be loaded (not built: run scripts/setup.sh). */
export function loadNative(): NativeBinding {
  if (binding) return binding;
  try {
    binding = createRequire(import.meta.url)(addonPath()) as NativeBinding;
  } catch (e) {
    loadError = e as Error;
    throw new FuseError(
      'FUSE_MOUNT',
      `the native backend is not built (${loadError.message}); run scripts/setup.sh or use --backend fuse-native`,
      {},
      { cause: e },
    );
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

export async function mountNative(tree: AlsTree, o: NativeBackendOptions): Promise<NativeMountHandle> {
  const n = loadNative();
  const controls = new ControlNodes();
  // C calls back on this thread only, so never before mount() has returned and `requests` is set.
  let requests: NativeRequests | undefined;
  const dispatch: NativeDispatch = (id, op, nodeid, a, b, c, d, uid, gid, pid, plus, name) =>
    requests!.dispatch(id, op, nodeid, a, b, c, d, uid, gid, pid, plus, name);
  const h = mountAddon(n, tree, o, dispatch);
  const slots = new LayerSlots(n, h, o.logger);
  requests = new NativeRequests({
    n, h, tree, controls, slots, logger: o.logger, timeouts: o.timeouts,
    controlTimeoutSec: o.controlTimeoutSec, layerTimeoutSec: o.layerTimeoutSec ?? LAYER_TIMEOUT_SEC, checkEveryResolve: o.checkEveryResolve ?? false,
  });
  tree.setDropListener((ref, key) => slots.unpublish(ref, key));
  const connId = await tuneMount(o.mountpoint);
  o.logger.info('fuse.mounted', { mountpoint: o.mountpoint, backend: 'native' });
  const flushCachedReads = cachedReadsFlusher(n, h, o);
  const usedTimer = o.onCachedReads ? setInterval(flushCachedReads, o.cachedReadsFlushMs ?? 10_000) : undefined;
  usedTimer?.unref();
  let unmounting: Promise<void> | undefined;
  const mounted = {
    mountpoint: o.mountpoint,
    stats: () => ({ ...n.stats(h), layers: slots.published, controlNodes: controls.size }),
    flushCachedReads,
    unmount: () =>
      (unmounting ??= (async () => {
        if (usedTimer) clearInterval(usedTimer);
        flushCachedReads();
        tree.setDropListener(undefined);
        await n.unmount(h, connId);
        o.logger.info('fuse.unmounted', { mountpoint: o.mountpoint, backend: 'native' });
      })()),
  };
  // fusermount3 (auto_unmount) mounts nosuid unless told `suid`, and libfuse 3 does not pass it on.
  if (o.mountOptions.includes('suid')) {
    try {
      await remountSuid(o.mountpoint, o.logger);
    } catch (e) {
      await mounted.unmount().catch(() => undefined);
      throw e;
    }
  }
  return mounted;
}

/** Layer content is immutable: its entries and attributes are cached long. */
const LAYER_TIMEOUT_SEC = 86_400;

/** Mount the addon's FUSE server at o.mountpoint; C answers the root and the layers' tables itself. */
function mountAddon(n: NativeBinding, tree: AlsTree, o: NativeBackendOptions, dispatch: NativeDispatch): NativeHandle {
  const t = o.timeouts;
  // The root is answered in C, cached by the kernel for at most a second (a dead daemon must soon show ENOTCONN).
  const ops: FuseOps = tree;
  const root = ops.getattr('/', { signal: new AbortController().signal });
  if (root instanceof Promise) throw new FuseError('FUSE_MOUNT', 'the root attributes must be known synchronously', {});
  try {
    return n.mount(
      {
        mountpoint: o.mountpoint,
        options: [...o.mountOptions, 'auto_unmount', 'fsname=lazy-als', 'subtype=lazy-als'].join(','),
        ...(o.objectsDir !== undefined ? { objectsDir: o.objectsDir } : {}),
        layerTimeoutSec: o.layerTimeoutSec ?? LAYER_TIMEOUT_SEC,
        controlTimeoutSec: o.controlTimeoutSec,
        missTimeoutMs: Math.max(t.lookupMs, t.readMs, t.defaultMs) + 5000,
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
}

/** Kernel device number of the mount (= its /sys/fs/fuse/connections id), from Node's st_dev. */
function connIdOf(dev: number): number {
  return (dev & 0xff) | ((dev >>> 12) & 0xfff00);
}

/** The mount's connection id (0: unknown), after giving it a 1 MiB read-ahead window. */
async function tuneMount(mountpoint: string): Promise<number> {
  // Never a synchronous syscall on our own mount from this thread: it would wait for itself.
  const connId = await stat(mountpoint).then((s) => connIdOf(s.dev), () => 0);
  // 1 MiB READs need a 1 MiB read-ahead window on the mount's bdi (root only; best effort).
  if (connId > 0) await writeFile(`/sys/class/bdi/0:${connId}/read_ahead_kb`, '1024').catch(() => undefined);
  return connId;
}

/** Reads C answers from cache objects reach the eviction clock in batches (a mark per chunk in C). */
function cachedReadsFlusher(n: NativeBinding, h: NativeHandle, o: NativeBackendOptions): () => void {
  return () => {
    if (!o.onCachedReads) return;
    const raw = n.takeUsed(h);
    if (raw.length === 0) return;
    const digests: Digest[] = [];
    for (let i = 0; i + 32 <= raw.length; i += 32) digests.push(`sha256:${raw.toString('hex', i, i + 32)}` as Digest);
    try {
      o.onCachedReads(digests);
    } catch (e) {
      o.logger.warn('fuse.native_cached_reads_failed', { error: e });
    }
  };
}
