/**
 * Builds the real layer provider from the daemon config: state dir → object store (chunks and
 * blobs, bounded by cache_size through Eviction) + metadata store; sources = every dfs root (OCI
 * layouts) first, then the registry client (registries.conf, auth file); all behind LayerCatalog.
 *
 * LEAD: this is the single wiring point between the daemon and src/index|cache|sources. It was
 * written against the catalog/cache/sources APIs as they stood when the FUSE side was finished;
 * check it when those modules settle. Still open: a credential sink for the auth helper's
 * payload (POST /credentials answers 501 until `credentials` below is provided).
 */
import { join } from 'node:path';
import type { Logger } from '../core/log.js';
import { ChunkCache } from '../cache/chunk-cache.js';
import { Eviction } from '../cache/eviction.js';
import { MetadataStore } from '../cache/metadata-store.js';
import { ObjectStore } from '../cache/object-store.js';
import type { LayerProvider } from '../fuse/layer-provider.js';
import { LayerCatalog } from '../index/catalog.js';
import { OciLayoutSource } from '../sources/dfs/oci-layout.js';
import { createRegistrySource } from '../sources/registry/create-registry-source.js';
import { SourceChain } from '../sources/source-chain.js';
import type { BlobSource } from '../sources/source.js';
import type { DaemonConfig } from './config.js';

export interface BuiltProvider {
  readonly provider: LayerProvider;
  /** For GET /status. */
  status?(): unknown;
  /** For POST /gc. */
  gc?(): unknown;
  /** For POST /credentials (the additional-layer-store-auth-helper payload). */
  credentials?(payload: unknown): unknown;
  close?(): Promise<void>;
}

export type ProviderFactory = (config: DaemonConfig, logger: Logger) => Promise<BuiltProvider>;

export const buildProvider: ProviderFactory = async (config, logger) => {
  const blobStore = await ObjectStore.open({ dir: join(config.stateDir, 'objects'), tmpDir: join(config.stateDir, 'tmp', 'objects'), logger });
  const metadata = await MetadataStore.open({ stateDir: config.stateDir, logger });
  const eviction = await Eviction.open({ store: blobStore, maxBytes: config.cacheSizeBytes, logger });
  const chunkCache = new ChunkCache({ store: blobStore, eviction, logger });
  const sources: BlobSource[] = config.dfsRoots.map((root) => new OciLayoutSource(root, logger));
  sources.push(
    await createRegistrySource({
      ...(config.registriesConf !== undefined ? { registriesConf: config.registriesConf } : {}),
      ...(config.authFile !== undefined ? { authFile: config.authFile } : {}),
      logger,
    }),
  );
  const source = new SourceChain(sources, logger);
  const catalog = new LayerCatalog({ source, metadata, chunkCache, blobStore, eviction, logger });
  return {
    provider: catalog,
    status: () => catalog.status(),
    gc: () => eviction.gc(),
    async close() {
      await catalog.close();
      await eviction.stop();
      await source.close?.();
    },
  };
};
