/**
 * LayerCatalog: answers "is there a layer at `<root>[/<refElem>]/<key>`?" with a ServedLayer.
 *
 * Fast negatives (ALS-LK-3): a malformed key or ref element is rejected before any I/O; failed
 * resolutions are remembered per (ref, key) for a short TTL (default 5 s) so repeated lookups of a
 * missing layer do no work. Positive answers are kept for the life of the process. Concurrent lookups
 * of the same (ref, key) share one resolution, and concurrent resolutions of one key share one
 * openLayer.
 *
 * Resolution, offline first (ALS-GC-2 — every path ever served stays servable):
 *  1. with a ref: the image persisted for that reference string (metadata store, re-verified);
 *     if it is unknown or does not contain the key (a re-pushed tag), source.resolve(ref), persisted;
 *     without a ref (store configured without `:ref`): only layers already known by key — the
 *     metadata store remembers each served layer's descriptor facts and the references it was served
 *     under, which are also used to reopen its blob. A never-served key cannot be resolved without a
 *     reference and answers "not found".
 *  2. findLayer(image, key): blob digest → Era A, TOC digest → Era B. A layer without a config
 *     diff_id is not served (see info.ts).
 *  3. the index: the persisted LayerRecord (loadLayerRecord re-verifies the TOC digest), else
 *     openLayer(blob via the source, {descriptor, expectedTocDigest, diffId}) and persist the record.
 *     Plain (non-TOC) layers are verified by a full pass; their file chunks, streamed through
 *     onPlainChunk, are staged and committed to the object store only after openLayer resolved.
 * Every failure makes lookup() return undefined (ENOENT ⇒ podman pulls normally) and is logged;
 * resolve() exposes the typed error (CLI inspect, status).
 *
 * Use counts (`use` create = +1, `rmdir` = −1) are hints (als-contract §7): never below 0, unknown
 * layers are a no-op on release, and a count of 0 never makes a layer unavailable.
 */
import type { RandomAccessBlob } from '../core/blob.js';
import { parseDigest, type Digest } from '../core/digest.js';
import { DEFAULT_LIMITS, type Limits } from '../core/limits.js';
import { silentLogger, type Logger } from '../core/log.js';
import type { ChunkDecoder } from '../formats/chunk-decoder.js';
import type { LayerRecord, OpenedLayer, OpenLayerOptions } from '../formats/layer-reader.js';
import type { LayerIndex } from '../formats/model.js';
import { loadLayerRecord, openLayer } from '../formats/open-layer.js';
import { parseReference, refFromBase64, type ImageReference } from '../sources/reference.js';
import { findLayer, manifestHasKey, type BlobSource, type LayerMatch, type ResolvedImage } from '../sources/source.js';
import { raceAbort, type ChunkCache } from '../cache/chunk-cache.js';
import { RefusalLog, type Refusal } from './refusals.js';
import { LazyAlsError } from '../core/errors.js';
import { verifyFullPass } from '../formats/full-pass.js';

/** Whole-layer check failures that mean "this blob is not what its TOC says" (not a network error). */
const QUARANTINE_CODES = new Set(['FORMAT_CONFLICT', 'DIFFID_MISMATCH', 'BLOB_DIGEST_MISMATCH', 'DECOMPRESS_FAILED', 'TAR_INVALID', 'ENTRY_PATH_UNSAFE', 'ENTRY_INVALID']);
import type { Eviction } from '../cache/eviction.js';
import type { MetadataStore, StoredLayer } from '../cache/metadata-store.js';
import type { ObjectStore } from '../cache/object-store.js';
import type { Prefetcher, PrefetchScheduler } from '../cache/prefetch.js';
import { IndexError } from './errors.js';
import { ServedLayer } from './layer.js';

/** The formats entry points (injectable for fault tests). */
export interface LayerFormats {
  openLayer(blob: RandomAccessBlob, options: OpenLayerOptions): Promise<OpenedLayer>;
  loadLayerRecord(record: LayerRecord, limits?: Limits): LayerIndex;
}

export const DEFAULT_FORMATS: LayerFormats = { openLayer, loadLayerRecord };

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
  /** How long a failed (ref, key) lookup is answered negatively without retrying, ms (default 5000). */
  readonly negativeTtlMs?: number;
  readonly memoryBlobLimit?: number;
  /** Where chunk spans are decoded and verified (default in process; the daemon passes a worker pool). */
  readonly chunkDecoder?: ChunkDecoder;
  readonly now?: () => number;
  readonly logger?: Logger;
}

export interface UseCount {
  readonly refElem: string | undefined;
  readonly key: string;
  readonly count: number;
}

export interface CatalogStatus {
  readonly served: { refElem: string | undefined; key: Digest; keyKind: 'blob' | 'toc'; fetchedBytes: number; uses: number }[];
  readonly useCounts: readonly UseCount[];
  readonly negativeEntries: number;
  /** Layers refused or quarantined, newest first (bounded, see refusals.ts). */
  readonly refused: readonly Refusal[];
  readonly lookups: { positive: number; negative: number; resolutions: number; opens: number };
}

/** Facts about the layer to serve, from a ResolvedImage or from the metadata store. */
interface LayerFacts extends StoredLayer {
  /** Reference to open the blob with (the lookup's ref, or one the layer was served under). */
  readonly openRef: ImageReference | undefined;
}

const SEP = '\u0000';

export class LayerCatalog {
  readonly #o: LayerCatalogOptions;
  readonly #formats: LayerFormats;
  readonly #log: Logger;
  readonly #now: () => number;
  readonly #negTtl: number;
  readonly #served = new Map<string, ServedLayer>();
  readonly #negative = new Map<string, number>();
  readonly #resolving = new Map<string, Promise<ServedLayer>>();
  readonly #indexes = new Map<Digest, Promise<LayerIndex>>();
  readonly #blobs = new Map<Digest, Promise<RandomAccessBlob>>();
  readonly #uses = new Map<string, number>();
  readonly #counters = { positive: 0, negative: 0, resolutions: 0, opens: 0 };
  readonly #refusals: RefusalLog;
  readonly #openers = new WeakMap<ServedLayer, { open: (signal?: AbortSignal) => Promise<RandomAccessBlob>; diffId: Digest }>();
  readonly #verifications = new Map<string, Promise<void>>();

  constructor(o: LayerCatalogOptions) {
    this.#o = o;
    this.#formats = o.formats ?? DEFAULT_FORMATS;
    this.#log = o.logger ?? silentLogger;
    this.#now = o.now ?? Date.now;
    this.#negTtl = o.negativeTtlMs ?? 5000;
    this.#refusals = new RefusalLog(this.#now);
  }

  /** Where the chunk objects live: the native FUSE backend reads verified objects from there directly. */
  get cachedObjectsDir(): string {
    return this.#o.blobStore.dir;
  }

  /** The layer at `[refElem/]key`, or undefined (malformed names, unknown or unservable layers, errors). */
  async lookup(refElem: string | undefined, key: string, signal?: AbortSignal): Promise<ServedLayer | undefined> {
    const id = idOf(refElem, key);
    const hit = this.#served.get(id);
    if (hit) {
      this.#counters.positive++;
      return hit;
    }
    const until = this.#negative.get(id);
    if (until !== undefined) {
      if (until > this.#now()) {
        this.#counters.negative++;
        return undefined;
      }
      this.#negative.delete(id);
    }
    try {
      const layer = await this.resolve(refElem, key, signal);
      this.#counters.positive++;
      return layer;
    } catch (e) {
      this.#counters.negative++;
      if (!signal?.aborted) this.#log.info('catalog.lookup_failed', { layer: id.replace(SEP, '/'), error: e });
      return undefined;
    }
  }

  /** Like lookup(), but throws the typed reason instead of answering undefined. */
  resolve(refElem: string | undefined, key: string, signal?: AbortSignal): Promise<ServedLayer> {
    const id = idOf(refElem, key);
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
        this.#negative.set(id, this.#now() + this.#negTtl);
        return Promise.reject(e);
      }
      this.#counters.resolutions++;
      p = this.#resolveFresh(refElem, ref, d).then(
        (layer) => {
          this.#served.set(id, layer);
          const fetched = this.#o.prefetcher?.start(layer);
          if (this.#o.verifyWholeLayers && layer.index.diffId === undefined && !this.#verifications.has(id)) {
            this.#verifications.set(id, (fetched ?? Promise.resolve()).then(() => this.#verifyWhole(layer, ref?.string)));
          }
          return layer;
        },
        (e: unknown) => {
          this.#negative.set(id, this.#now() + this.#negTtl);
          // Never silent: podman will download this layer itself; the admin must be able to see why.
          const r = this.#refusals.record('refused', key, ref?.string, e);
          this.#log.warn('catalog.layer_refused', { layer: key, ...(ref ? { ref: ref.string } : {}), code: r.code, error: e });
          throw e;
        },
      );
      const cleanup = (): void => {
        this.#resolving.delete(id);
      };
      p.then(cleanup, cleanup);
      this.#resolving.set(id, p);
    }
    return raceAbort(p, signal, { layer: key });
  }

  /** The whole-layer check once its bytes are fetched anyway (see verifyWholeLayers); never rejects. */
  async #verifyWhole(layer: ServedLayer, ref: string | undefined): Promise<void> {
    const o = this.#openers.get(layer);
    if (!o) return;
    const run = async (signal?: AbortSignal): Promise<void> => {
      const blob = await o.open(signal);
      await verifyFullPass(blob, layer.index, { diffId: o.diffId, limits: this.#o.limits ?? DEFAULT_LIMITS, ...(signal ? { signal } : {}) });
    };
    try {
      await (this.#o.scheduler ? this.#o.scheduler.background(run) : run());
      this.#log.info('catalog.layer_verified', { layer: layer.key });
    } catch (e) {
      if (this.#o.scheduler?.closedSignal.aborted) return;
      if (e instanceof LazyAlsError && QUARANTINE_CODES.has(e.code)) {
        // The TOC we served from is not the tar a full pull unpacks: stop serving its bytes.
        layer.quarantine(e);
        const r = this.#refusals.record('quarantined', layer.key, ref, e);
        this.#log.warn('catalog.layer_quarantined', { layer: layer.key, ...(ref !== undefined ? { ref } : {}), code: r.code, error: e });
      } else {
        this.#log.warn('catalog.verify_failed', { layer: layer.key, error: e });
      }
    }
  }

  /** The whole-layer check of a served layer, when one was started (tests, status). */
  verification(refElem: string | undefined, key: string): Promise<void> | undefined {
    return this.#verifications.get(idOf(refElem, key));
  }

  async #resolveFresh(refElem: string | undefined, ref: ImageReference | undefined, key: Digest): Promise<ServedLayer> {
    const t0 = performance.now();
    const facts = ref ? await this.#factsFromImage(ref, key, refElem) : await this.#factsFromStore(key);
    if (facts.diffId === undefined) {
      throw new IndexError('LAYER_NOT_SERVABLE', 'the image config has no diff_id for this layer', { layer: key, blob: facts.blobDigest });
    }
    const index = await this.#indexFor(facts);
    this.#log.debug('catalog.resolved', { layer: key, ms: Math.round(performance.now() - t0) });
    const layer = new ServedLayer({
      key,
      keyKind: facts.keyKind,
      ...(refElem !== undefined ? { refElem } : {}),
      index,
      blobDigest: facts.blobDigest,
      blobSize: facts.blobSize,
      diffId: facts.diffId,
      annotations: facts.annotations,
      chunkCache: this.#o.chunkCache,
      blobStore: this.#o.blobStore,
      openBlob: (signal) => this.#blobFor(facts, signal),
      ...(this.#o.scheduler ? { scheduler: this.#o.scheduler } : {}),
      ...(this.#o.eviction ? { eviction: this.#o.eviction } : {}),
      ...(this.#o.memoryBlobLimit !== undefined ? { memoryBlobLimit: this.#o.memoryBlobLimit } : {}),
      ...(this.#o.chunkDecoder ? { chunkDecoder: this.#o.chunkDecoder } : {}),
      logger: this.#log,
    });
    this.#openers.set(layer, { open: (signal) => this.#blobFor(facts, signal), diffId: facts.diffId });
    return layer;
  }

  /**
   * A pull asks for an image's layers one after the other, and each costs a footer and a TOC
   * round trip plus the index build: once the image is known, resolve its other TOC layers (keyed
   * the way this lookup was: blob or TOC digest, as the asking podman does) in parallel, so the
   * later lookups join work already under way. Failures stay in the negative cache as usual.
   */
  #resolveSiblings(refElem: string | undefined, match: LayerMatch): void {
    for (const l of match.manifest.layers) {
      if (l.tocDigest === undefined) continue; // plain layers are fetched whole: only on demand
      const k = match.keyKind === 'toc' ? l.tocDigest : l.digest;
      if (k === match.layer.digest || k === match.layer.tocDigest) continue;
      const id = idOf(refElem, k);
      if (this.#served.has(id) || this.#resolving.has(id) || this.#negative.has(id)) continue;
      this.resolve(refElem, k).catch(() => undefined);
    }
  }

  async #factsFromImage(ref: ImageReference, key: Digest, refElem?: string): Promise<LayerFacts> {
    let image: ResolvedImage | undefined = await this.#o.metadata.loadImage(ref);
    let match = image ? findLayer(image, key) : undefined;
    if (!match) {
      const source = this.#o.source;
      if (!source) throw new IndexError('SOURCE_UNAVAILABLE', `${ref.string} is not cached and no source is configured`, { layer: key });
      // An index is scanned only up to the manifest that has the key (sources bound the scan);
      // manifests found by earlier scans of the same index stay known (offline after a restart).
      image = withKnownManifests(await source.resolve(ref, undefined, (m) => manifestHasKey(m, key)), image);
      await this.#o.metadata.saveImage(image).catch((e: unknown) => this.#log.warn('catalog.persist_image_failed', { reference: ref.string, error: e }));
      match = findLayer(image, key);
    }
    if (!match) throw new IndexError('LAYER_NOT_FOUND', `${ref.string} has no layer with this blob or TOC digest`, { layer: key });
    this.#resolveSiblings(refElem, match);
    const l = match.layer;
    return {
      key,
      keyKind: match.keyKind,
      blobDigest: l.digest,
      blobSize: l.size,
      mediaType: l.mediaType,
      annotations: l.annotations,
      ...(l.tocDigest !== undefined ? { tocDigest: l.tocDigest } : {}),
      ...(l.diffId !== undefined ? { diffId: l.diffId } : {}),
      refs: [ref.string],
      openRef: ref,
    };
  }

  async #factsFromStore(key: Digest): Promise<LayerFacts> {
    const e = await this.#o.metadata.loadLayerEntry(key);
    if (!e) throw new IndexError('LAYER_NOT_FOUND', 'layer never served and no reference given (store without :ref)', { layer: key });
    let openRef: ImageReference | undefined;
    for (const r of e.layer.refs) {
      try {
        openRef = parseReference(r);
        break;
      } catch {
        // skip a malformed stored reference
      }
    }
    return { ...e.layer, openRef };
  }

  /** One index per key: persisted record first, else openLayer through the source (then persisted). */
  #indexFor(facts: LayerFacts): Promise<LayerIndex> {
    let p = this.#indexes.get(facts.key);
    if (!p) {
      p = this.#loadOrOpen(facts);
      this.#indexes.set(facts.key, p);
      p.catch(() => this.#indexes.delete(facts.key));
    } else if (facts.openRef) {
      // Remember the new reference for ref-less lookups (best effort).
      void this.#o.metadata.addLayerRef(facts.key, facts.openRef.string).catch(() => undefined);
    }
    return p;
  }

  async #loadOrOpen(facts: LayerFacts): Promise<LayerIndex> {
    const limits = this.#o.limits ?? DEFAULT_LIMITS;
    const stored = await this.#o.metadata.loadLayer(facts.key);
    if (stored && stored.layer.blobDigest === facts.blobDigest && stored.layer.blobSize === facts.blobSize) {
      try {
        const index = this.#formats.loadLayerRecord(stored.record, limits);
        checkIndex(index, facts);
        if (facts.openRef && !stored.layer.refs.includes(facts.openRef.string)) {
          await this.#o.metadata.addLayerRef(facts.key, facts.openRef.string).catch(() => undefined);
        }
        return index;
      } catch (e) {
        this.#log.warn('catalog.record_rejected', { layer: facts.key, error: e });
      }
    }
    return this.#open(facts, limits);
  }

  async #open(facts: LayerFacts, limits: Limits): Promise<LayerIndex> {
    this.#counters.opens++;
    const blob = await this.#blobFor(facts);
    const staging = this.#o.blobStore.createStaging();
    let stagingFailed = false;
    let opened: OpenedLayer;
    try {
      opened = await this.#formats.openLayer(blob, {
        descriptor: { mediaType: facts.mediaType, digest: facts.blobDigest, size: facts.blobSize, annotations: facts.annotations },
        ...(facts.keyKind === 'toc' ? { expectedTocDigest: facts.key } : facts.tocDigest !== undefined ? { expectedTocDigest: facts.tocDigest } : {}),
        ...(facts.diffId !== undefined ? { diffId: facts.diffId } : {}),
        limits,
        onPlainChunk: async (chunk, data) => {
          if (stagingFailed || chunk.zeros) return;
          try {
            await staging.add(chunk.digest, data);
          } catch (e) {
            stagingFailed = true; // caching is best effort; the open continues
            this.#log.warn('catalog.staging_failed', { layer: facts.key, error: e });
          }
        },
      });
      checkIndex(opened.index, facts);
    } catch (e) {
      await staging.discard();
      throw e;
    }
    // openLayer resolved: the blob digest (and diffID) matched, the staged chunks are trustworthy.
    try {
      for (const [d, size] of await staging.commit()) this.#o.eviction?.noteStored(d, size);
    } catch (e) {
      this.#log.warn('catalog.commit_failed', { layer: facts.key, error: e });
    }
    const { openRef: _ignored, ...stored } = facts;
    await this.#o.metadata.saveLayer(stored, opened.record).catch((e: unknown) => this.#log.warn('catalog.persist_layer_failed', { layer: facts.key, error: e }));
    return opened.index;
  }

  /** The layer's blob through the source, opened once per key (reopened after a failure). */
  #blobFor(facts: LayerFacts, signal?: AbortSignal): Promise<RandomAccessBlob> {
    let p = this.#blobs.get(facts.blobDigest);
    if (!p) {
      const source = this.#o.source;
      const ref = facts.openRef;
      if (!source || !ref) {
        return Promise.reject(new IndexError('SOURCE_UNAVAILABLE', source ? 'no reference known to open the blob with' : 'no source configured', { layer: facts.key, blob: facts.blobDigest }));
      }
      p = source.openBlob(ref, facts.blobDigest, facts.blobSize, signal);
      this.#blobs.set(facts.blobDigest, p);
      p.catch(() => this.#blobs.delete(facts.blobDigest));
    }
    return p;
  }

  /** `create(<layer>/use)`: +1. Returns the new count. */
  use(refElem: string | undefined, key: string): number {
    const id = idOf(refElem, key);
    const n = (this.#uses.get(id) ?? 0) + 1;
    this.#uses.set(id, n);
    return n;
  }

  /** `rmdir(<layer dir>)`: −1, never below 0; unknown layers are a no-op. Returns the new count. */
  release(refElem: string | undefined, key: string): number {
    const id = idOf(refElem, key);
    const n = this.#uses.get(id);
    if (n === undefined) return 0;
    if (n <= 1) {
      this.#uses.delete(id);
      return 0;
    }
    this.#uses.set(id, n - 1);
    return n - 1;
  }

  useCount(refElem: string | undefined, key: string): number {
    return this.#uses.get(idOf(refElem, key)) ?? 0;
  }

  /** Layers served so far in this process. */
  served(): ServedLayer[] {
    return [...this.#served.values()];
  }

  status(): CatalogStatus {
    const now = this.#now();
    return {
      served: this.served().map((l) => ({
        refElem: l.refElem,
        key: l.key,
        keyKind: l.keyKind,
        fetchedBytes: l.stats.fetchedBytes,
        uses: this.useCount(l.refElem, l.key),
      })),
      useCounts: [...this.#uses].map(([id, count]) => {
        const i = id.indexOf(SEP);
        const r = id.slice(0, i);
        return { refElem: r === '' ? undefined : r, key: id.slice(i + 1), count };
      }),
      negativeEntries: [...this.#negative.values()].filter((t) => t > now).length,
      refused: this.#refusals.list(),
      lookups: { ...this.#counters },
    };
  }

  /** Close opened blobs (source connections). Served layers stay usable; blobs reopen on demand. */
  async close(): Promise<void> {
    const blobs = [...this.#blobs.values()];
    this.#blobs.clear();
    for (const p of blobs) {
      const b = await p.catch(() => undefined);
      await b?.close?.().catch(() => undefined);
    }
  }
}

function idOf(refElem: string | undefined, key: string): string {
  return `${refElem ?? ''}${SEP}${key}`;
}

/** The index must belong to the key it is served under. */
function checkIndex(index: LayerIndex, facts: LayerFacts): void {
  const ctx = { layer: facts.key, blob: facts.blobDigest };
  if (facts.keyKind === 'toc' && index.tocDigest !== facts.key) {
    throw new IndexError('LAYER_NOT_SERVABLE', `layer index has TOC digest ${index.tocDigest ?? 'none'}`, ctx);
  }
  if (index.blobSize !== facts.blobSize) {
    throw new IndexError('LAYER_NOT_SERVABLE', `layer index is for a blob of ${index.blobSize} bytes, not ${facts.blobSize}`, ctx);
  }
}

/** `fresh`, plus the manifests `known` (same index, an earlier partial scan) had and `fresh` lacks. */
function withKnownManifests(fresh: ResolvedImage, known: ResolvedImage | undefined): ResolvedImage {
  if (!known || known.digest !== fresh.digest) return fresh;
  const have = new Set(fresh.manifests.map((m) => m.digest));
  const extra = known.manifests.filter((m) => !have.has(m.digest));
  return extra.length === 0 ? fresh : { ...fresh, manifests: [...fresh.manifests, ...extra] };
}
