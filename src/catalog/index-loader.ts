/**
 * One LayerIndex per key: the persisted LayerRecord first (loadLayerRecord re-verifies its TOC
 * digest), else openLayer over the blob through the source, then persisted. Plain (non-TOC) layers
 * are verified by a full pass; their file chunks, streamed through onPlainChunk, are staged and
 * committed to the object store only after openLayer resolved (blob digest and diff_id matched).
 *
 * A TOC layer looked up by blob digest (podman ≤ 5.0) is, by default (`era_a_toc_layers = "verify"`),
 * read the same way as a plain layer: podman 4 derives the layer ID from the `diff-digest` in `info`
 * and reuses that layer for every image claiming the same diff_id, so the diff_id must be verified
 * before the layer is served, not merely copied from a config (audit H5). `trust` reads it lazily
 * from its TOC and publishes the config's diff_id unchecked (stargz-store's behaviour).
 */
import type { RandomAccessBlob } from '../core/blob.js';
import type { Digest } from '../core/digest.js';
import { DEFAULT_LIMITS, type Limits } from '../core/limits.js';
import type { Logger } from '../core/log.js';
import { isTocFormat } from '../formats/detect.js';
import { IndexWorkers, type BuiltLayer, type StoredRecord } from '../formats/index-worker.js';
import type { OpenLayerOptions } from '../formats/layer-reader.js';
import type { LayerIndex } from '../formats/model.js';
import { tocReadHints } from '../formats/read-hints.js';
import { PrefetchedBlob } from '../core/prefetched-blob.js';
import type { Eviction } from '../cache/eviction.js';
import type { MetadataStore } from '../cache/metadata-store.js';
import type { ObjectStore } from '../cache/object-store.js';
import { IndexError } from './errors.js';
import { loggedBlob } from './logged-blob.js';
import type { LayerFacts } from './layer-facts.js';
import { PromiseMemo } from './single-flight.js';

/**
 * The formats entry points (injectable for fault tests). The default builds every index in a capped
 * worker thread (formats/index-worker.ts): the record comes back as its JSON bytes, persisted as they are.
 */
export interface LayerFormats {
  openLayer(blob: RandomAccessBlob, options: OpenLayerOptions): Promise<BuiltLayer>;
  loadLayerRecord(record: StoredRecord, limits?: Limits): Promise<LayerIndex> | LayerIndex;
}

const workers = new IndexWorkers();
export const DEFAULT_FORMATS: LayerFormats = {
  openLayer: (blob, options) => workers.openLayer(blob, options),
  loadLayerRecord: (record, limits) => workers.loadLayerRecord(record, limits),
};

/** How TOC layers looked up by blob digest (podman ≤ 5.0) are served (docs/security.md). */
export type EraATocLayers = 'verify' | 'trust';
export const ERA_A_TOC_LAYERS: readonly EraATocLayers[] = ['verify', 'trust'];

/** Whether a layer looked up with this kind of key is read in one whole verifying pass (plain layers are anyway). */
export function readsWhole(keyKind: 'blob' | 'toc', mode: EraATocLayers | undefined): boolean {
  return keyKind === 'blob' && mode !== 'trust';
}

export interface IndexLoaderOptions {
  /** Default `verify`: a whole pass over the blob before a blob-digest key of a TOC layer is served. */
  readonly eraATocLayers?: EraATocLayers;
  readonly metadata: MetadataStore;
  readonly blobStore: ObjectStore;
  readonly eviction?: Eviction;
  readonly formats: LayerFormats;
  readonly limits?: Limits;
  readonly openBlob: (facts: LayerFacts) => Promise<RandomAccessBlob>;
  readonly logger: Logger;
}

export class IndexLoader {
  readonly #o: IndexLoaderOptions;
  readonly #indexes = new PromiseMemo<Digest, LayerIndex>();
  /** openLayer calls made (status). */
  opens = 0;

  constructor(o: IndexLoaderOptions) {
    this.#o = o;
  }

  indexFor(facts: LayerFacts): Promise<LayerIndex> {
    const { promise, fresh } = this.#indexes.get(facts.key, () => this.#loadOrOpen(facts));
    if (!fresh && facts.openRef) this.#rememberRef(facts.key, facts.openRef.string);
    return promise;
  }

  /** Remember another reference for ref-less lookups (best effort). */
  #rememberRef(key: Digest, ref: string): void {
    void this.#o.metadata.addLayerRef(key, ref).catch((e: unknown) => this.#o.logger.debug('catalog.add_ref_failed', { layer: key, error: e }));
  }

  async #loadOrOpen(facts: LayerFacts): Promise<LayerIndex> {
    const limits = this.#o.limits ?? DEFAULT_LIMITS;
    const stored = await this.#o.metadata.loadLayerBytes(facts.key);
    if (stored && stored.layer.blobDigest === facts.blobDigest && stored.layer.blobSize === facts.blobSize) {
      try {
        const index = await this.#o.formats.loadLayerRecord(stored.record, limits);
        checkIndex(index, facts);
        if (this.#wholePass(facts) && isTocFormat(index.format)) {
          // read lazily under `trust` earlier: its diff_id was never checked
          throw new IndexError('LAYER_NOT_SERVABLE', 'record of a lazily read TOC layer; era_a_toc_layers = "verify" needs a whole pass', { layer: facts.key });
        }
        if (facts.openRef && !stored.layer.refs.includes(facts.openRef.string)) this.#rememberRef(facts.key, facts.openRef.string);
        return index;
      } catch (e) {
        this.#o.logger.warn('catalog.record_rejected', { layer: facts.key, error: e });
      }
    }
    return this.#open(facts, limits);
  }

  /** Blob-digest keys are read in one verifying pass unless the admin chose `trust`. */
  #wholePass(facts: LayerFacts): boolean {
    return readsWhole(facts.keyKind, this.#o.eraATocLayers);
  }

  async #open(facts: LayerFacts, limits: Limits): Promise<LayerIndex> {
    this.opens++;
    const t0 = performance.now();
    const source = loggedBlob(await this.#o.openBlob(facts), this.#o.logger, { layer: facts.key });
    // head, footer, TOC and tar-split in one request where the descriptor tells where they are
    const blob = new PrefetchedBlob(source, tocReadHints({ size: source.size, annotations: facts.annotations }, limits));
    const tOpen = performance.now();
    const staging = this.#o.blobStore.createStaging();
    let stagingFailed = false;
    let opened: BuiltLayer;
    try {
      opened = await this.#o.formats.openLayer(blob, {
        descriptor: { mediaType: facts.mediaType, digest: facts.blobDigest, size: facts.blobSize, annotations: facts.annotations },
        ...expectedDigests(facts, this.#wholePass(facts)),
        ...(this.#wholePass(facts) ? { wholePass: true } : {}),
        limits,
        onPlainChunk: async (chunk, data) => {
          if (stagingFailed || chunk.zeros) return;
          try {
            await staging.add(chunk.digest, data);
          } catch (e) {
            stagingFailed = true; // caching is best effort; the open continues
            this.#o.logger.warn('catalog.staging_failed', { layer: facts.key, error: e });
          }
        },
      });
      checkIndex(opened.index, facts);
    } catch (e) {
      await staging.discard();
      throw e;
    }
    const tIndex = performance.now();
    // openLayer resolved: the blob digest (and diffID) matched, the staged chunks are trustworthy.
    try {
      for (const [d, size] of await staging.commit()) this.#o.eviction?.noteStored(d, size);
    } catch (e) {
      this.#o.logger.warn('catalog.commit_failed', { layer: facts.key, error: e });
    }
    const { openRef: _ignored, ...stored } = facts;
    await this.#o.metadata
      .saveLayer(stored, opened.record)
      .catch((e: unknown) => this.#o.logger.warn('catalog.persist_layer_failed', { layer: facts.key, error: e }));
    const ms = (a: number, b: number): number => Math.round(b - a);
    this.#o.logger.debug(
      'catalog.index_opened',
      { layer: facts.key, openMs: ms(t0, tOpen), indexMs: ms(tOpen, tIndex), persistMs: ms(tIndex, performance.now()) },
    );
    return opened.index;
  }
}

function expectedDigests(facts: LayerFacts, wholePass: boolean): Pick<OpenLayerOptions, 'expectedTocDigest' | 'diffId'> {
  const toc = facts.keyKind === 'toc' ? facts.key : wholePass ? undefined : facts.tocDigest;
  return { ...(toc !== undefined ? { expectedTocDigest: toc } : {}), ...(facts.diffId !== undefined ? { diffId: facts.diffId } : {}) };
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
