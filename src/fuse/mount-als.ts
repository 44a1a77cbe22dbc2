/**
 * Mount an ALS tree over a LayerProvider: the one entry point the daemon and the tests use.
 *
 * Two backends behind one seam (the AlsTree over the provider):
 *  - 'native' (the default where its addon is built): native-backend.ts, a libfuse3 low-level
 *    server in C answering layer content from per-layer tables and cached chunk objects, calling
 *    JS only on misses;
 *  - 'fuse-native': adapter.ts, path callbacks through fuse-native (libfuse 2, every op in JS),
 *    the portable fallback.
 * `LAZY_ALS_BACKEND` (native | fuse-native) picks the default when the caller does not: it is how
 * the conformance suite runs the same tests against each backend.
 */
import type { Digest } from '../core/digest.js';
import type { Logger } from '../core/log.js';
import { AccessPolicy, mountOptionList } from './access-policy.js';
import { mountFuse, type FuseOps, type MountHandle, type OpTimeouts } from './adapter.js';
import { AlsTree } from './als-tree.js';
import { errnoOf } from './errno.js';
import type { InodeAllocator } from './inodes.js';
import type { LayerProvider } from './layer-provider.js';
import type { IdMap } from './id-map.js';
import { mountNative, nativeAvailable, nativeUnavailableReason } from './native-backend.js';

export const BACKENDS = ['native', 'fuse-native'] as const;
export type BackendName = (typeof BACKENDS)[number];

export function isBackendName(s: unknown): s is BackendName {
  return typeof s === 'string' && (BACKENDS as readonly string[]).includes(s);
}

/**
 * The backend used when none is given: $LAZY_ALS_BACKEND, else native where its addon is built,
 * else fuse-native — said once on `logger` (warn), since it is slower and cannot serve every name.
 */
export function defaultBackend(logger?: Logger): BackendName {
  const env = process.env['LAZY_ALS_BACKEND'];
  if (isBackendName(env)) return env;
  if (nativeAvailable()) return 'native';
  logger?.warn('fuse.backend_fallback', {
    backend: 'fuse-native',
    reason:
      `the native backend is not built (${nativeUnavailableReason() ?? 'unknown'}); ` +
      'run scripts/setup.sh to build it, or choose --backend fuse-native to silence this',
  });
  return 'fuse-native';
}

/**
 * The mount's settings. Those the daemon configures have no default here: their values live in one
 * place, src/daemon/config.ts (`alsMountSettings(config.fuse)`), which tests and benches use too.
 */
export interface AlsMountOptions {
  readonly mountpoint: string;
  readonly provider: LayerProvider;
  readonly logger: Logger;
  readonly backend?: BackendName;
  readonly timeouts: OpTimeouts;
  readonly entryTimeoutSec: number;
  readonly attrTimeoutSec: number;
  readonly allowOther: boolean;
  readonly suid: boolean;
  /** Who may make the store resolve layers (default: root and the daemon's uid). */
  readonly policy?: AccessPolicy;
  /** How layer ids are shown (default identity; a store mounted by a user maps them: id-map.ts). */
  readonly ids?: IdMap;
  readonly maxLayers: number;
  readonly inodes?: InodeAllocator;
  /** Verified chunk objects the native backend may read directly (see LayerProvider.cachedObjectsDir). */
  readonly objectsDir?: string;
  /** native: FUSE passthrough for large fully cached files when root (default on, docs/native.md). */
  readonly passthrough?: boolean;
  /** native: layer slots at most (default 65,535; tests use a few to reach the bound). */
  readonly maxLayerSlots?: number;
  /** native: how often reads C served from cache objects reach provider.noteCachedReads (default 10 s). */
  readonly cachedReadsFlushMs?: number;
  readonly debug?: boolean;
  /** Called after every FUSE operation (metrics): op name, seconds, errno (0 = success). */
  readonly onOp?: OpObserver;
}

type OpObserver = (op: string, seconds: number, errno: number) => void;

export interface AlsMount extends MountHandle {
  readonly tree: AlsTree;
  readonly backend: BackendName;
  /** Backend counters for `status` (native: C-side ops, misses, cached reads…). */
  backendStats(): Record<string, unknown>;
  /** native: pass the reads C served from cache objects to the provider now (else every few s). */
  flushCachedReads?(): void;
}

export async function mountAls(o: AlsMountOptions): Promise<AlsMount> {
  const backend = o.backend ?? defaultBackend(o.logger);
  // The native backend passes every caller's ids; fuse-native has only the control dirs' modes.
  const base = o.policy ?? AccessPolicy.rootOnly();
  const policy = backend === 'native' ? base.withCallerIds() : base;
  const tree = new AlsTree({
    provider: o.provider,
    logger: o.logger,
    policy,
    ...(o.ids !== undefined ? { ids: o.ids } : {}),
    maxLayers: o.maxLayers,
    ...(o.inodes !== undefined ? { inodes: o.inodes } : {}),
    // libfuse 2 cannot ask the kernel to enforce ACLs: such layers are refused (posix-acl.ts)
    refuseAcls: backend !== 'native',
  });
  const { timeouts, allowOther, suid } = o;
  if (backend === 'native') {
    const objectsDir = o.objectsDir ?? o.provider.cachedObjectsDir;
    const handle = await mountNative(tree, {
      mountpoint: o.mountpoint,
      logger: o.logger,
      timeouts,
      mountOptions: mountOptionList({ allowOther, suid }),
      controlTimeoutSec: o.entryTimeoutSec,
      checkEveryResolve: !policy.kernelEnforceable,
      ...(objectsDir !== undefined ? { objectsDir } : {}),
      ...(o.passthrough !== undefined ? { passthrough: o.passthrough } : {}),
      ...(o.maxLayerSlots !== undefined ? { maxSlots: o.maxLayerSlots + 1 } : {}),
      ...(o.provider.noteCachedReads ? { onCachedReads: (d: Digest[]) => o.provider.noteCachedReads!(d) } : {}),
      ...(o.cachedReadsFlushMs !== undefined ? { cachedReadsFlushMs: o.cachedReadsFlushMs } : {}),
      debug: o.debug ?? false,
    });
    return {
      tree,
      backend,
      mountpoint: handle.mountpoint,
      unmount: () => handle.unmount(),
      backendStats: () => ({ ...handle.stats() }),
      flushCachedReads: () => handle.flushCachedReads(),
    };
  }
  const handle = await mountFuse(o.onOp ? observed(tree, o.onOp) : tree, {
    mountpoint: o.mountpoint,
    logger: o.logger,
    timeouts,
    // One value for the whole mount (libfuse 2 high-level API): layer content is immutable and
    // control nodes never change meaning once they resolve, so a long value is safe (see adapter.ts).
    entryTimeoutSec: o.entryTimeoutSec,
    attrTimeoutSec: o.attrTimeoutSec,
    allowOther,
    suid,
    policy,
    debug: o.debug ?? false,
  });
  return { tree, backend, mountpoint: handle.mountpoint, unmount: () => handle.unmount(), backendStats: () => ({}) };
}

/** FuseOps that report each call's duration and errno (the tree itself stays unaware). */
function observed(ops: FuseOps, onOp: OpObserver): FuseOps {
  return new Proxy(ops, {
    get(target, prop, receiver) {
      const v: unknown = Reflect.get(target, prop, receiver);
      if (typeof v !== 'function' || typeof prop !== 'string') return v;
      const fn = v as (...a: unknown[]) => unknown;
      return (...args: unknown[]): unknown => {
        const t0 = process.hrtime.bigint();
        const done = (errno: number): void => onOp(prop === 'mutate' ? String(args[0]) : prop, Number(process.hrtime.bigint() - t0) / 1e9, errno);
        let r: unknown;
        try {
          r = fn.apply(target, args);
        } catch (e) {
          done(errnoOf(e));
          throw e;
        }
        if (r instanceof Promise) {
          r.then(() => done(0), (e: unknown) => done(errnoOf(e)));
          return r;
        }
        done(0);
        return r;
      };
    },
  });
}
