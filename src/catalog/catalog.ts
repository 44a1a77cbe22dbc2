/**
 * LayerCatalog: answers "is there a layer at `<root>[/<refElem>]/<key>`?" with a ServedLayer. It
 * wires parts that each do one job:
 *
 *  - negative-cache.ts  failed lookups answered "not found" for a short TTL, bounded (LRU);
 *  - layer-facts.ts     (ref, key) → the layer's descriptor facts, from the remembered image (no GET
 *                       for an unknown digest under a known reference) or the source;
 *  - index-loader.ts    facts → LayerIndex: persisted record, else openLayer with plain-chunk staging;
 *  - blob-handles.ts    one shared source handle per blob, opened only on a cache miss;
 *  - use-counts.ts      the `use`/`rmdir` hints, bounded;
 *  - refusals.ts        layers refused or quarantined, and why (bounded);
 *  - whole-layer-check.ts  optional full-pass check of a TOC layer after its background fetch (quarantine);
 *  - catalog-status.ts  the status document.
 *
 * Malformed keys and ref elements are rejected before any I/O; concurrent lookups of one layer share
 * one resolution (single flight); positive answers are kept for the life of the process. Resolution
 * is offline first (docs/architecture.md, "what survives a restart"). Every failure makes lookup()
 * answer undefined (ENOENT ⇒ podman pulls normally) and is logged; resolve() throws the typed error.
 */
import { raceAbort } from '../core/abort.js';
import type { RandomAccessBlob } from '../core/blob.js';
import type { Digest } from '../core/digest.js';
import { parseDigest } from '../core/digest.js';
import type { LazyAlsError } from '../core/errors.js';
import type { Limits } from '../core/limits.js';
import { silentLogger, type Logger } from '../core/log.js';
import type { ChunkDecoder } from '../formats/chunk-decoder.js';
import { refFromBase64, type ImageReference } from '../sources/reference.js';
import type { BlobSource, LayerMatch } from '../sources/source.js';
import type { ChunkCache } from '../cache/chunk-cache.js';
import type { Eviction } from '../cache/eviction.js';
import type { MetadataStore } from '../cache/metadata-store.js';
import type { ObjectStore } from '../cache/object-store.js';
import type { Prefetcher, PrefetchScheduler } from '../cache/prefetch.js';
import { BlobHandles } from './blob-handles.js';
import { catalogStatus, type CatalogStatus, type LookupCounters } from './catalog-status.js';
import { IndexError } from './errors.js';
import { DEFAULT_FORMATS, IndexLoader, readsWhole, type EraATocLayers, type LayerFormats } from './index-loader.js';
import { LayerFactsResolver, type LayerFacts } from './layer-facts.js';
import { layerIdOf, layerIdText, type LayerId } from './layer-id.js';
import { ServedLayer } from './layer.js';
import { NegativeCache } from './negative-cache.js';
import { RefusalLog } from './refusals.js';
import { SingleFlight } from './single-flight.js';
import { UseCounts } from './use-counts.js';
import { WholeLayerCheck } from './whole-layer-check.js';

export { DEFAULT_FORMATS, ERA_A_TOC_LAYERS, type EraATocLayers, type LayerFormats } from './index-loader.js';
export type { CatalogStatus } from './catalog-status.js';

export interface LayerCatalogOptions {
  /** Where images and blobs come from. Omit to serve only what the state dir already knows. */
  readonly source?: BlobSource;
  readonly metadata: MetadataStore;
  readonly chunkCache: ChunkCache;
  /** Object store for chunks and whole blobs (the one the ChunkCache uses). */
  readonly blobStore: ObjectStore;
  readonly eviction?: Eviction;
  readonly prefetcher?: Prefetcher;
  readonly scheduler?: PrefetchScheduler;
  readonly formats?: LayerFormats;
  readonly limits?: Limits;
  /**
   * After a TOC layer's background fetch, read the whole blob once and check it is the tar the TOC
   * claims (formats/full-pass.ts); a layer that is not gets quarantined (reads EIO). Default false.
   */
  readonly verifyWholeLayers?: boolean;
  /** TOC layers looked up by blob digest: `verify` (default) = whole pass first, `trust` = lazy (index-loader.ts). */
  readonly eraATocLayers?: EraATocLayers;
  /** How long a failed (ref, key) lookup is answered negatively without retrying, ms (default 5000). */
  readonly negativeTtlMs?: number;
  /** Most failed lookups remembered (default 4096). */
  readonly negativeMax?: number;
  /** Most layers whose `use` count is kept (default 4096). */
  readonly useCountsMax?: number;
  /** Least time between source resolutions of one reference for digests it does not list, ms (default 60 s). */
  readonly imageRefreshMs?: number;
  readonly memoryBlobLimit?: number;
  /** Where chunk spans are decoded and verified (default in process; the daemon passes a worker pool). */
  readonly chunkDecoder?: ChunkDecoder;
  readonly now?: () => number;
  readonly logger?: Logger;
}

export class LayerCatalog {
  readonly #o: LayerCatalogOptions;
  readonly #log: Logger;
  readonly #served = new Map<LayerId, ServedLayer>();
  readonly #negative: NegativeCache;
  readonly #resolving = new SingleFlight<LayerId, ServedLayer>();
  readonly #facts: LayerFactsResolver;
  readonly #indexes: IndexLoader;
  readonly #blobs: BlobHandles;
  readonly #uses: UseCounts;
  readonly #refusals: RefusalLog;
  readonly #wholeChecks: WholeLayerCheck;
  /** What the whole-layer check needs of each served layer. */
  readonly #checkTargets = new WeakMap<ServedLayer, { diffId: Digest; open: (signal?: AbortSignal) => Promise<RandomAccessBlob> }>();
  readonly #counters: LookupCounters = { positive: 0, negative: 0, resolutions: 0, opens: 0 };

  constructor(o: LayerCatalogOptions) {
    this.#o = o;
    this.#log = o.logger ?? silentLogger;
    const now = o.now ?? Date.now;
    this.#negative = new NegativeCache({
      now,
      ...(o.negativeTtlMs !== undefined ? { ttlMs: o.negativeTtlMs } : {}),
      ...(o.negativeMax !== undefined ? { max: o.negativeMax } : {}),
    });
    this.#uses = new UseCounts(o.useCountsMax);
    this.#refusals = new RefusalLog(now);
    this.#blobs = new BlobHandles(o.source, this.#log);
    this.#wholeChecks = new WholeLayerCheck({
      ...(o.scheduler ? { scheduler: o.scheduler } : {}),
      ...(o.limits ? { limits: o.limits } : {}),
      logger: this.#log,
      quarantine: (layer, ref, reason) => this.#quarantine(layer, ref, reason),
    });
    this.#facts = new LayerFactsResolver({
      ...(o.source ? { source: o.source } : {}),
      metadata: o.metadata,
      now,
      logger: this.#log,
      ...(o.imageRefreshMs !== undefined ? { refreshMs: o.imageRefreshMs } : {}),
    });
    this.#indexes = new IndexLoader({
      metadata: o.metadata,
      blobStore: o.blobStore,
      ...(o.eviction ? { eviction: o.eviction } : {}),
      formats: o.formats ?? DEFAULT_FORMATS,
      ...(o.limits ? { limits: o.limits } : {}),
      openBlob: (facts) => this.#blobs.open(facts),
      ...(o.eraATocLayers ? { eraATocLayers: o.eraATocLayers } : {}),
      logger: this.#log,
    });
  }

  /** Where the chunk objects live: the native FUSE backend reads verified objects from there directly. */
  get cachedObjectsDir(): string {
    return this.#o.blobStore.dir;
  }

  /** Objects the native FUSE backend read directly: the eviction clock sees them as used now. */
  noteCachedReads(digests: readonly Digest[]): void {
    const ev = this.#o.eviction;
    if (ev) for (const d of digests) ev.touch(d);
  }

  /** The layer at `[refElem/]key`, or undefined (malformed names, unknown or unservable layers, errors). */
  async lookup(refElem: string | undefined, key: string, signal?: AbortSignal): Promise<ServedLayer | undefined> {
    const id = layerIdOf(refElem, key);
    const hit = this.#served.get(id);
    if (hit) {
      this.#counters.positive++;
      return hit;
    }
    if (this.#negative.has(id)) {
      this.#counters.negative++;
      return undefined;
    }
    try {
      const layer = await this.resolve(refElem, key, signal);
      this.#counters.positive++;
      return layer;
    } catch (e) {
      this.#counters.negative++;
      if (!signal?.aborted) this.#log.info('catalog.lookup_failed', { layer: layerIdText(id), error: e });
      return undefined;
    }
  }

  /** Like lookup(), but throws the typed reason instead of answering undefined. */
  resolve(refElem: string | undefined, key: string, signal?: AbortSignal): Promise<ServedLayer> {
    const id = layerIdOf(refElem, key);
    const hit = this.#served.get(id);
    if (hit) return Promise.resolve(hit);
    let p = this.#resolving.get(id);
    if (!p) {
      // Parse synchronously: malformed names fail without any I/O (and are cached negatively too).
      let d: Digest;
      let ref: ImageReference | undefined;
      try {
        d = parseDigest(key, 'layer key');
        ref = refElem === undefined ? undefined : refFromBase64(refElem);
      } catch (e) {
        this.#negative.add(id);
        return Promise.reject(e);
      }
      this.#counters.resolutions++;
      p = this.#resolving.run(id, () => this.#resolveFresh(id, refElem, ref, d));
    }
    return raceAbort(p, signal, { layer: key });
  }

  async #resolveFresh(id: LayerId, refElem: string | undefined, ref: ImageReference | undefined, key: Digest): Promise<ServedLayer> {
    try {
      const layer = await this.#serve(refElem, ref, key);
      this.#served.set(id, layer);
      if (layer.quarantined) return layer; // known bad blob: nothing to fetch or check
      const fetched = this.#o.prefetcher?.start(layer);
      const target = this.#checkTargets.get(layer);
      if (this.#o.verifyWholeLayers && layer.index.diffId === undefined && target) {
        this.#wholeChecks.start(id, { layer, ref: ref?.string, ...target }, fetched);
      }
      return layer;
    } catch (e) {
      this.#negative.add(id);
      // Never silent: podman will download this layer itself; the admin must be able to see why.
      const r = this.#refusals.record('refused', key, ref?.string, e);
      this.#log.warn('catalog.layer_refused', { layer: key, ...(ref ? { ref: ref.string } : {}), code: r.code, error: e });
      throw e;
    }
  }

  async #serve(refElem: string | undefined, ref: ImageReference | undefined, key: Digest): Promise<ServedLayer> {
    const t0 = performance.now();
    let facts: LayerFacts;
    let imagePersisted: Promise<void> | undefined;
    if (ref) {
      const found = await this.#facts.fromImage(ref, key);
      this.#resolveSiblings(refElem, found.match);
      facts = found.facts;
      imagePersisted = found.persisted;
    } else {
      facts = await this.#facts.fromStore(key);
    }
    try {
      return await this.#serveFacts(refElem, ref, key, facts, imagePersisted, t0);
    } catch (e) {
      await imagePersisted; // a refusal too leaves no write running behind it
      throw e;
    }
  }

  async #serveFacts(
    refElem: string | undefined,
    ref: ImageReference | undefined,
    key: Digest,
    facts: LayerFacts,
    imagePersisted: Promise<void> | undefined,
    t0: number,
  ): Promise<ServedLayer> {
    if (facts.diffId === undefined) {
      throw new IndexError('LAYER_NOT_SERVABLE', 'the image config has no diff_id for this layer', { layer: key, blob: facts.blobDigest });
    }
    const tFacts = performance.now();
    const quarantined = this.#o.metadata.loadQuarantine(facts.blobDigest);
    quarantined.catch(() => undefined); // awaited below, unless the index fails first
    const index = await this.#indexes.indexFor(facts);
    // Answer only once the image is durable too (it was written while the index was built).
    await imagePersisted;
    this.#log.debug('catalog.resolved', { layer: key, ms: Math.round(performance.now() - t0), factsMs: Math.round(tFacts - t0) });
    const o = this.#o;
    const openBlob = (signal?: AbortSignal): Promise<RandomAccessBlob> => this.#blobs.open(facts, signal);
    const layer = new ServedLayer({
      key,
      keyKind: facts.keyKind,
      ...(refElem !== undefined ? { refElem } : {}),
      index,
      blobDigest: facts.blobDigest,
      blobSize: facts.blobSize,
      diffId: facts.diffId,
      annotations: facts.annotations,
      chunkCache: o.chunkCache,
      blobStore: o.blobStore,
      openBlob,
      ...(o.scheduler ? { scheduler: o.scheduler } : {}),
      ...(o.eviction ? { eviction: o.eviction } : {}),
      ...(o.memoryBlobLimit !== undefined ? { memoryBlobLimit: o.memoryBlobLimit } : {}),
      ...(o.chunkDecoder ? { chunkDecoder: o.chunkDecoder } : {}),
      logger: this.#log,
    });
    this.#checkTargets.set(layer, { diffId: facts.diffId, open: openBlob });
    const q = await quarantined;
    if (q) {
      // Quarantined in an earlier run: served as it was then (EIO), never trusted afresh.
      const reason = new IndexError(
        'LAYER_QUARANTINED',
        `quarantined ${new Date(q.at).toISOString()}: ${q.code}: ${q.message}`,
        { layer: key, blob: facts.blobDigest },
      );
      layer.quarantine(reason);
      this.#refusals.record('quarantined', key, ref?.string, reason);
      this.#log.warn('catalog.layer_quarantined', { layer: key, ...(ref ? { ref: ref.string } : {}), code: q.code, error: reason, persisted: true });
    }
    return layer;
  }

  /**
   * A served layer turned out not to match its blob: its reads answer EIO from now on (also the
   * native backend's cached reads: ServedLayer.onQuarantine), a warn line and `status` say why, the
   * fact is persisted in the state dir (a restart serves it quarantined again), and the cache
   * entries its reads produced are dropped (memory tier, chunk objects, the whole blob).
   */
  async #quarantine(layer: ServedLayer, ref: string | undefined, reason: LazyAlsError): Promise<void> {
    layer.quarantine(reason);
    const r = this.#refusals.record('quarantined', layer.key, ref, reason);
    this.#log.warn('catalog.layer_quarantined', { layer: layer.key, ...(ref !== undefined ? { ref } : {}), code: r.code, error: reason });
    const o = this.#o;
    try {
      await o.metadata.saveQuarantine(layer.blobDigest, { key: layer.key, ...(ref !== undefined ? { ref } : {}), code: r.code, message: r.message, at: r.at });
    } catch (e) {
      this.#log.warn('catalog.quarantine_not_persisted', { layer: layer.key, error: e });
    }
    const digests = new Set<Digest>([layer.blobDigest]);
    for (const n of layer.index.allNodes()) for (const c of n.chunks) if (!c.zeros) digests.add(c.digest);
    // reads and prefetches of it stop at quarantine(); the writes already under way land first
    await o.chunkCache.settled();
    o.chunkCache.forget(digests);
    let freed = 0;
    for (const d of digests) {
      // A refuted layer's object left behind is what a later reader could be served: never silent.
      const n = await o.blobStore.delete(d).catch((e: unknown) => {
        this.#log.warn('catalog.quarantine_delete_failed', { layer: layer.key, digest: d, error: e });
        return 0;
      });
      if (n > 0) o.eviction?.noteDeleted(d, n);
      freed += n;
    }
    this.#log.info('catalog.quarantine_dropped', { layer: layer.key, objects: digests.size, bytes: freed });
  }

  /** The whole-layer check of a served layer, when one was started (tests, status). */
  verification(refElem: string | undefined, key: string): Promise<void> | undefined {
    return this.#wholeChecks.get(layerIdOf(refElem, key));
  }

  /**
   * A pull asks for an image's layers one after the other, and each costs a footer and a TOC
   * round trip plus the index build: once the image is known, resolve its other TOC layers (keyed
   * the way this lookup was: blob or TOC digest, as the asking podman does) in parallel, so the
   * later lookups join work already under way. Failures stay in the negative cache as usual.
   */
  #resolveSiblings(refElem: string | undefined, match: LayerMatch): void {
    // TOC layers read whole (blob-digest keys under era_a_toc_layers = "verify") are like plain ones
    if (readsWhole(match.keyKind, this.#o.eraATocLayers)) return;
    for (const l of match.manifest.layers) {
      if (l.tocDigest === undefined) continue; // plain layers are fetched whole: only on demand
      const k = match.keyKind === 'toc' ? l.tocDigest : l.digest;
      if (k === match.layer.digest || k === match.layer.tocDigest) continue;
      const id = layerIdOf(refElem, k);
      if (this.#served.has(id) || this.#resolving.has(id) || this.#negative.has(id)) continue;
      this.resolve(refElem, k).catch(() => undefined); // refused layers are logged by #resolveFresh
    }
  }

  /** `create(<layer>/use)`: +1. Returns the new count. */
  use(refElem: string | undefined, key: string): number {
    return this.#uses.use(layerIdOf(refElem, key));
  }

  /** `rmdir(<layer dir>)`: −1, never below 0; unknown layers are a no-op. Returns the new count. */
  release(refElem: string | undefined, key: string): number {
    return this.#uses.release(layerIdOf(refElem, key));
  }

  useCount(refElem: string | undefined, key: string): number {
    return this.#uses.get(layerIdOf(refElem, key));
  }

  /** Layers served so far in this process. */
  served(): ServedLayer[] {
    return [...this.#served.values()];
  }

  status(): CatalogStatus {
    return catalogStatus({
      served: this.served(),
      uses: this.#uses,
      negative: this.#negative,
      refusals: this.#refusals,
      counters: { ...this.#counters, opens: this.#indexes.opens },
    });
  }

  /** Close opened blobs (source connections). Served layers stay usable; blobs reopen on demand. */
  close(): Promise<void> {
    return this.#blobs.close();
  }
}
