/**
 * Builds the real layer provider from the daemon config: state dir → object store (chunks and
 * blobs, bounded by cache_size through Eviction) + metadata store; sources = every dfs root (OCI
 * layouts) first, then the registry client (registries.conf, auth files, and the credentials the
 * auth helper hands over); all behind LayerCatalog, with landmark prefetch (and optional background
 * fetch) yielding to on-demand reads. This is the single wiring point between the daemon and
 * src/catalog|cache|sources.
 */
import { join } from 'node:path';
import type { Logger } from '../core/log.js';
import { ChunkCache } from '../cache/chunk-cache.js';
import { Eviction } from '../cache/eviction.js';
import { MetadataStore } from '../cache/metadata-store.js';
import { ObjectStore } from '../cache/object-store.js';
import { PrefetchScheduler, Prefetcher } from '../cache/prefetch.js';
import type { LayerProvider } from '../fuse/layer-provider.js';
import { LayerCatalog } from '../catalog/catalog.js';
import { ChunkDecoderPool } from '../formats/chunk-decoder.js';
import { CredentialStore } from '../sources/credential-store.js';
import { parseHelperPayload } from '../sources/helper-payload.js';
import { CredentialFile } from './credential-file.js';
import { OciLayoutSource } from '../sources/dfs/oci-layout.js';
import { createRegistrySource } from '../sources/registry/create-registry-source.js';
import { SourceChain } from '../sources/source-chain.js';
import type { BlobSource } from '../sources/source.js';
import type { DaemonConfig } from './config.js';
import type { GcOptions } from './control-socket.js';
import { LayerActivity, MeteredPrefetcher, meteredFormats, meteredProvider, meteredSource, teeTelemetry } from './instrument.js';
import type { MetricsSnapshot, Telemetry } from './metrics.js';

export interface BuiltProvider {
  readonly provider: LayerProvider;
  /** For GET /status. */
  status?(): unknown;
  /** For POST /gc: trim to the configured size, or (`all`) evict everything no layer in use needs. */
  gc?(options?: GcOptions): unknown;
  /** For the metrics endpoint: cheap counters only (no disk I/O). */
  metricsSnapshot?(): MetricsSnapshot;
  /** For POST /credentials (the additional-layer-store-auth-helper payload). */
  credentials?(payload: unknown): unknown;
  close?(): Promise<void>;
}

/** `telemetry`: when given (metrics on), the source, formats, provider and prefetcher report to it. */
export type ProviderFactory = (config: DaemonConfig, logger: Logger, telemetry?: Telemetry) => Promise<BuiltProvider>;

/** Everything the provider is wired from; the control endpoints below read and steer these. */
interface StoreParts {
  readonly config: DaemonConfig;
  readonly logger: Logger;
  readonly activity: LayerActivity;
  readonly blobStore: ObjectStore;
  readonly eviction: Eviction;
  readonly chunkCache: ChunkCache;
  /** Objects `gc --all` must keep (chunks and blobs of layers in use); empty outside a purge. */
  readonly pinned: Set<string>;
  readonly credentials: CredentialStore;
  readonly credentialFile: CredentialFile;
  readonly source: SourceChain | undefined;
  readonly prefetcher: Prefetcher;
  readonly chunkDecoder: ChunkDecoderPool;
  readonly catalog: LayerCatalog;
}

export const buildProvider: ProviderFactory = async (config, logger, metrics) => {
  // Always on: last access per layer and recent refusals, for `status`; plus the metrics if enabled.
  const activity = new LayerActivity();
  const telemetry = metrics ? teeTelemetry(activity, metrics) : activity;
  // Chunks are written before they are served (ChunkCache), so no fsync per object: a crash of the
  // daemon loses nothing written, and an object lost or torn by a power cut is re-verified on read
  // (a refetch, never a wrong byte). Chunk writes and reads run in io worker threads (issue 11).
  const blobStore = await ObjectStore.open({
    dir: join(config.stateDir, 'objects'),
    tmpDir: join(config.stateDir, 'tmp', 'objects'),
    fsync: false,
    logger,
    ioThreads: 2,
  });
  const metadata = await MetadataStore.open({ stateDir: config.stateDir, logger });
  // Objects of layers in use (`use` count > 0) are never evicted (docs/als-contract.md §7): the set
  // is refreshed at the start of every gc, automatic or `gc --all`.
  const pinned = new Set<string>();
  let pinInUse = (): void => undefined; // set once the catalog exists (it needs the eviction)
  const eviction = await Eviction.open({
    store: blobStore,
    maxBytes: config.cacheSizeBytes,
    isPinned: (d) => pinned.has(d),
    beforeGc: () => pinInUse(),
    logger,
  });
  eviction.start(); // access times reach the objects' mtimes, so LRU order survives restarts
  const chunkCache = new ChunkCache({ store: blobStore, eviction, logger });
  const credentials = new CredentialStore();
  // The auth helper's credentials survive restarts (0600 file in the state dir, expiring).
  const credentialFile = new CredentialFile(config.stateDir, config.credentialsTtlMs, logger);
  credentials.add(await credentialFile.load());
  const source = await buildSource(config, logger, credentials, telemetry);
  const scheduler = new PrefetchScheduler({ concurrency: 2 });
  // decode + sha256 of fetched chunks run in worker threads, beside the fetch (issue 11)
  const chunkDecoder = new ChunkDecoderPool();
  const prefetchOpts = { scheduler, background: config.backgroundFetch, logger };
  const prefetcher = metrics ? new MeteredPrefetcher(prefetchOpts, chunkCache, telemetry) : new Prefetcher(prefetchOpts);
  const catalog = new LayerCatalog({
    ...(source ? { source } : {}),
    formats: meteredFormats(telemetry),
    metadata, chunkCache, blobStore, eviction, prefetcher, scheduler, chunkDecoder, logger, limits: config.limits,
    // The background fetch reads every byte anyway: check the layer is the tar its TOC claims.
    verifyWholeLayers: config.backgroundFetch,
    eraATocLayers: config.eraATocLayers,
  });
  pinInUse = () => inUseObjects(catalog, pinned);
  const parts: StoreParts = {
    config, logger, activity, blobStore, eviction, chunkCache, pinned, credentials, credentialFile, source, prefetcher, chunkDecoder, catalog,
  };
  return {
    provider: meteredProvider(catalog, telemetry),
    metricsSnapshot: () => metricsSnapshotOf(parts),
    status: () => statusOf(parts),
    gc: (options: GcOptions = {}) => (options.all ? purgeUnused(parts) : eviction.gc()),
    async credentials(payload: unknown) {
      const entries = parseHelperPayload(JSON.stringify(payload));
      credentials.add(entries);
      await credentialFile.save(entries);
      return entries.map((e) => e.ref.string);
    },
    close: () => closeParts(parts),
  };
};

/** Every dfs root (OCI layouts) first, then the registry; undefined when there is none. */
async function buildSource(config: DaemonConfig, logger: Logger, credentials: CredentialStore, telemetry: Telemetry): Promise<SourceChain | undefined> {
  const sources: BlobSource[] = config.dfsRoots.map((root) => new OciLayoutSource(root, logger, { maxIndexEntries: config.maxIndexEntries }));
  if (config.registry) {
    const registry = await createRegistrySource({
      ...(config.registriesConf !== undefined ? { registriesConf: config.registriesConf } : {}),
      ...(config.authFile !== undefined ? { authFile: config.authFile } : {}),
      credentials: [credentials],
      extra: { maxIndexEntries: config.maxIndexEntries },
      logger,
    });
    sources.push(meteredSource(registry, telemetry));
  }
  return sources.length > 0 ? new SourceChain(sources, logger) : undefined;
}

function metricsSnapshotOf({ catalog, chunkCache, eviction, config }: StoreParts): MetricsSnapshot {
  const c = chunkCache.stats;
  const ev = eviction.evicted;
  return {
    layers: catalog.served().map((l) => ({
      key: l.key,
      keyKind: l.keyKind,
      blobDigest: l.blobDigest,
      blobSize: l.blobSize,
      fetchedBytes: l.stats.fetchedBytes,
      readBytes: l.stats.readBytes,
      uses: catalog.useCount(l.refElem, l.key),
    })),
    cache: {
      hotHits: c.hotHits, diskHits: c.diskHits, misses: c.misses, joined: c.joined, bytesFetched: c.bytesFetched,
      storeFailures: c.storeFailures, hotBytes: c.hotBytes, usageBytes: eviction.usageBytes, limitBytes: config.cacheSizeBytes,
      evictedObjects: ev.objects, evictedBytes: ev.bytes, gcRuns: ev.runs,
    },
  };
}

async function statusOf({ catalog, activity, chunkCache, eviction, config, prefetcher, credentials }: StoreParts): Promise<unknown> {
  const layers = await Promise.all(
    catalog.served().map(async (l) => ({
      ref: l.refElem === undefined ? undefined : Buffer.from(l.refElem, 'base64').toString('utf8'),
      key: l.key,
      keyKind: l.keyKind,
      format: l.index.format,
      blobSize: l.blobSize,
      uses: catalog.useCount(l.refElem, l.key),
      lastAccessMs: activity.lastAccess(l.key) ?? null,
      ...l.stats,
      ...(await l.cacheStatus().catch(() => ({}))),
    })),
  );
  const c = chunkCache.stats;
  const lookups = c.hotHits + c.diskHits + c.misses + c.joined;
  return {
    layers,
    cache: {
      usageBytes: eviction.usageBytes,
      limitBytes: config.cacheSizeBytes,
      evictionRunning: eviction.running,
      hitRate: lookups === 0 ? null : (c.hotHits + c.diskHits) / lookups,
      ...c,
    },
    prefetch: prefetcher.stats,
    refused: activity.refusedLayers,
    credentials: credentials.size,
    catalog: catalog.status(),
  };
}

/** `gc --all`: evict everything except what layers in use need (a c/storage `use` not yet released). */
/** Fill `pinned` with the objects (blob, chunks) of the layers in use now; returns how many layers. */
function inUseObjects(catalog: LayerCatalog, pinned: Set<string>): number {
  const inUse = catalog.served().filter((l) => catalog.useCount(l.refElem, l.key) > 0);
  pinned.clear();
  for (const l of inUse) {
    pinned.add(l.blobDigest);
    for (const node of l.index.allNodes()) if (node.type === 'reg') for (const c of node.chunks) if (!c.zeros) pinned.add(c.digest);
  }
  return inUse.length;
}

/** `gc --all`: evict everything except what layers in use need (a c/storage `use` not yet released). */
async function purgeUnused({ catalog, pinned, chunkCache, eviction }: StoreParts) {
  await chunkCache.drain(); // fetches in flight land first, so they are evicted too
  const r = await eviction.gc({ targetBytes: 0 }); // pins the layers in use first (beforeGc)
  chunkCache.dropHot((d) => pinned.has(d));
  return { ...r, all: true, layersInUse: inUseObjects(catalog, pinned), keptObjects: r.objectsBefore - r.deleted };
}

/**
 * Each step is bounded: a registry that hangs (a fetch that never ends, a connection that never
 * closes) must not keep a stopping daemon alive until the supervisor kills it.
 */
async function closeParts({ logger, prefetcher, chunkCache, catalog, eviction, source, chunkDecoder, blobStore }: StoreParts): Promise<void> {
  const bounded = (what: string, ms: number, p: Promise<unknown>): Promise<unknown> => {
    let t: NodeJS.Timeout | undefined;
    return Promise.race([
      p.catch((e: unknown) => logger.warn('daemon.close_step_failed', { step: what, error: e })),
      new Promise((r) => (t = setTimeout(() => r(logger.warn('daemon.close_step_timeout', { step: what, ms })), ms))),
    ]).finally(() => clearTimeout(t));
  };
  await bounded('prefetch', 5000, prefetcher.close());
  await bounded('drain', 5000, chunkCache.drain());
  await bounded('catalog', 2000, catalog.close());
  await eviction.stop();
  await bounded('source', 2000, source?.close?.() ?? Promise.resolve());
  await bounded('decoder', 2000, chunkDecoder.close());
  await bounded('object io', 2000, blobStore.close());
}
