/**
 * The daemon's life: clear a stale mount → build the provider → mount → control socket →
 * READY=1 → wait for SIGTERM/SIGINT → STOPPING=1 → close the socket, unmount, close the provider
 * (in `finally`, so an error anywhere after the mount still unmounts). Returns the exit code:
 * 0 after a signal, 1 when start-up fails (the error is logged and rethrown for the CLI line).
 */
import { chmod, mkdir } from 'node:fs/promises';
import { relative } from 'node:path';
import type { Logger } from '../core/log.js';
import { AccessPolicy } from '../fuse/access-policy.js';
import { InodeAllocator } from '../fuse/inodes.js';
import { mountAls, type AlsMount } from '../fuse/mount-als.js';
import { controlInodeKey } from './inode-key.js';
import { alsMountSettings, type DaemonConfig } from './config.js';
import { isControlAlive, startControlSocket, type ControlServer } from './control-socket.js';
import { DaemonMetrics, startMetricsServer, type MetricsServer, type MetricsSnapshot } from './metrics.js';
import { buildProvider as defaultFactory, type BuiltProvider, type ProviderFactory } from './provider-factory.js';
import { sdNotify } from './sd-notify.js';
import { onStopSignals } from './signals.js';
import { clearStaleMount } from './stale-mount.js';
import { idMapFor } from './subids.js';

export interface ServeDeps {
  readonly logger: Logger;
  readonly buildProvider?: ProviderFactory;
  /** Resolves to stop the daemon (tests); SIGTERM/SIGINT always do. */
  readonly stop?: Promise<unknown>;
  readonly now?: () => number;
  /** Called once the store is mounted and answering (the CLI prints the ready line). */
  readonly onReady?: (info: ReadyInfo) => void;
}

export interface ReadyInfo {
  readonly mountpoint: string;
  readonly stateDir: string;
  readonly socket: string;
  /** The FUSE backend serving the mount. */
  readonly backend: string;
  /** `host:port` of the metrics endpoint, when enabled. */
  readonly metrics: string | undefined;
  /** How layer ids are shown (fuse.id_map). */
  readonly ids: string;
}

const EMPTY_SNAPSHOT: MetricsSnapshot = {
  layers: [],
  cache: {
    hotHits: 0,
    diskHits: 0,
    misses: 0,
    joined: 0,
    bytesFetched: 0,
    storeFailures: 0,
    hotBytes: 0,
    usageBytes: 0,
    limitBytes: 0,
    evictedObjects: 0,
    evictedBytes: 0,
    gcRuns: 0,
  },
};

/** The state dir (private) and the mountpoint (a dead mount left by a killed daemon cleared first). */
async function prepareDirs(config: DaemonConfig, logger: ServeDeps['logger']): Promise<void> {
  await mkdir(config.stateDir, { recursive: true, mode: 0o700 });
  // Private whatever it was before (the stores inside are 0700 too). Search-only (0711) when the
  // mountpoint lives inside it (the default layout), so allowed users can still reach the mount.
  const rel = relative(config.stateDir, config.mountpoint);
  await chmod(config.stateDir, rel !== '' && !rel.startsWith('..') ? 0o711 : 0o700);
  // Before anything touches the mountpoint: on a dead mount even mkdir fails with ENOTCONN.
  await clearStaleMount(config.mountpoint, logger, () => isControlAlive(config.socketPath));
  await mkdir(config.mountpoint, { recursive: true, mode: 0o755 });
}

export async function serve(config: DaemonConfig, deps: ServeDeps): Promise<number> {
  const { logger } = deps;
  const now = deps.now ?? Date.now;
  const started = now();
  const signals = onStopSignals(logger);
  let built: BuiltProvider | undefined;
  let mount: AlsMount | undefined;
  let control: ControlServer | undefined;
  let metricsServer: MetricsServer | undefined;
  try {
    await prepareDirs(config, logger);
    // Metrics first (a bad address fails start-up before anything is mounted); the snapshot reads
    // the provider once it exists.
    const metrics = config.metricsAddress ? new DaemonMetrics(() => built?.metricsSnapshot?.() ?? EMPTY_SNAPSHOT, config.mountpoint) : undefined;
    if (metrics && config.metricsAddress) metricsServer = await startMetricsServer(metrics, config.metricsAddress.host, config.metricsAddress.port, logger);
    built = await (deps.buildProvider ?? defaultFactory)(config, logger, metrics);
    const f = config.fuse;
    const ids = await idMapFor(f.idMap, logger);
    mount = await mountAls({
      mountpoint: config.mountpoint,
      provider: built.provider,
      logger,
      ...alsMountSettings(f),
      policy: AccessPolicy.fromConfig({ resolveUids: f.resolveUids, resolveGids: f.resolveGids, daemonUid: process.getuid?.() ?? 0 }),
      ids,
      inodes: new InodeAllocator({ key: await controlInodeKey(config.stateDir) }),
      ...(metrics ? { onOp: (op: string, s: number, errno: number) => metrics.fuseOp(op, s, errno) } : {}),
    });
    const m = mount;
    const b = built;
    control = await startControlSocket(
      config.socketPath,
      {
        status: async () => ({
          pid: process.pid,
          mountpoint: config.mountpoint,
          stateDir: config.stateDir,
          configFile: config.configFile ?? null,
          uptimeSec: Math.round((now() - started) / 1000),
          rssBytes: process.memoryUsage().rss,
          fuse: { backend: m.backend, ...m.tree.stats(), ...m.backendStats() },
          catalog: b.status ? await b.status() : null,
        }),
        gc: async (o) => {
          if (!b.gc) return { gc: 'not supported by this provider' };
          return b.gc(o);
        },
        ...(b.credentials ? { credentials: (p: unknown) => b.credentials!(p) } : {}),
      },
      logger,
    );
    await sdNotify('READY=1', logger);
    const ready: ReadyInfo = {
      mountpoint: config.mountpoint,
      stateDir: config.stateDir,
      socket: config.socketPath,
      backend: m.backend,
      metrics: metricsServer?.address,
      ids: ids.identity ? 'as in the layers' : 'mapped to subordinate ids (rootless podman)',
    };
    logger.info('daemon.ready', { ...ready, pid: process.pid });
    deps.onReady?.(ready);
    const why = await Promise.race([signals.stopped, ...(deps.stop ? [deps.stop.then(() => 'stop' as const)] : [])]);
    logger.info('daemon.stopping', { reason: why });
    await sdNotify('STOPPING=1', logger);
    return 0;
  } finally {
    await control?.close().catch((e: unknown) => logger.error('daemon.control_close_failed', { error: e }));
    await metricsServer?.close().catch((e: unknown) => logger.error('daemon.metrics_close_failed', { error: e }));
    await mount?.unmount().catch((e: unknown) => logger.error('daemon.unmount_failed', { error: e }));
    await built?.close?.().catch((e: unknown) => logger.error('daemon.provider_close_failed', { error: e }));
    signals.dispose();
    logger.info('daemon.stopped', {});
  }
}
