/**
 * Mount an ALS tree over a LayerProvider: the one entry point the daemon and the tests use.
 */
import type { Logger } from '../core/log.js';
import { mountFuse, type MountHandle, type OpTimeouts } from './adapter.js';
import { AlsTree } from './als-tree.js';
import type { InodeAllocator } from './inodes.js';
import type { LayerProvider } from './layer-provider.js';

export interface AlsMountOptions {
  readonly mountpoint: string;
  readonly provider: LayerProvider;
  readonly logger: Logger;
  readonly timeouts?: Partial<OpTimeouts>;
  readonly entryTimeoutSec?: number;
  readonly attrTimeoutSec?: number;
  readonly allowOther?: boolean;
  readonly suid?: boolean;
  readonly maxLayers?: number;
  readonly inodes?: InodeAllocator;
  readonly debug?: boolean;
}

export const DEFAULT_TIMEOUTS: OpTimeouts = Object.freeze({ lookupMs: 60_000, readMs: 120_000, defaultMs: 30_000 });

export interface AlsMount extends MountHandle {
  readonly tree: AlsTree;
}

export async function mountAls(o: AlsMountOptions): Promise<AlsMount> {
  const tree = new AlsTree({
    provider: o.provider,
    logger: o.logger,
    ...(o.maxLayers !== undefined ? { maxLayers: o.maxLayers } : {}),
    ...(o.inodes !== undefined ? { inodes: o.inodes } : {}),
  });
  const handle = await mountFuse(tree, {
    mountpoint: o.mountpoint,
    logger: o.logger,
    timeouts: { ...DEFAULT_TIMEOUTS, ...o.timeouts },
    // One value for the whole mount (libfuse 2 high-level API): layer content is immutable and
    // control nodes never change meaning once they resolve, so a long value is safe (see adapter.ts).
    entryTimeoutSec: o.entryTimeoutSec ?? 60,
    attrTimeoutSec: o.attrTimeoutSec ?? 60,
    allowOther: o.allowOther ?? true,
    suid: o.suid ?? process.getuid?.() === 0,
    debug: o.debug ?? false,
  });
  return { tree, mountpoint: handle.mountpoint, unmount: () => handle.unmount() };
}
