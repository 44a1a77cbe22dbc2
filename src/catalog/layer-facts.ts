/**
 * Which layer a store path names: (ref, key) → the facts needed to open and serve it (descriptor,
 * diff_id, the reference to open the blob with).
 *
 *  - with a ref: the image remembered for that reference (in memory, else the metadata store),
 *    re-resolved through the source only when the key is not in it (a re-pushed tag) — and then at
 *    most once per `refreshMs` per reference, one request for all lookups waiting on it. Unknown
 *    digests under a known reference are answered from the remembered manifest: no GET per lookup,
 *    and the state file is rewritten only when the image actually changed.
 *  - without a ref (store configured without `:ref`): only layers already served, from the metadata
 *    store, opened with a reference they were served under.
 */
import type { Digest } from '../core/digest.js';
import type { Logger } from '../core/log.js';
import type { MetadataStore, StoredLayer } from '../cache/metadata-store.js';
import { parseReference, type ImageReference } from '../sources/reference.js';
import { findLayer, manifestHasKey, type BlobSource, type LayerMatch, type ResolvedImage } from '../sources/source.js';
import { LRUCache } from 'lru-cache';
import { IndexError } from './errors.js';
import { SingleFlight } from './single-flight.js';

/** Facts about the layer to serve, from a ResolvedImage or from the metadata store. */
export interface LayerFacts extends StoredLayer {
  /** Reference to open the blob with (the lookup's ref, or one the layer was served under). */
  readonly openRef: ImageReference | undefined;
}

const DEFAULT_IMAGE_REFRESH_MS = 60_000;
/** Images kept in memory (each a few manifests and configs). */
const DEFAULT_IMAGES_MAX = 256;

export interface LayerFactsOptions {
  readonly source?: BlobSource;
  readonly metadata: MetadataStore;
  readonly now: () => number;
  readonly logger: Logger;
  /** Least time between two source resolutions of one reference for keys it does not list, ms. */
  readonly refreshMs?: number;
  readonly maxImages?: number;
}

interface KnownImage {
  readonly image: ResolvedImage;
  /** When the source was last asked for this reference (-Infinity: loaded from disk only). */
  readonly checkedAt: number;
  /** Settles once the image is durable in the metadata store (or its write failed and was logged). */
  readonly persisted: Promise<void>;
}

const PERSISTED: Promise<void> = Promise.resolve();

export class LayerFactsResolver {
  readonly #o: LayerFactsOptions;
  readonly #refreshMs: number;
  readonly #images: LRUCache<string, KnownImage>;
  readonly #resolving = new SingleFlight<string, KnownImage>();
  /** The latest image write per reference, while it runs. */
  readonly #writes = new Map<string, Promise<void>>();
  /** Source resolutions made (status, tests). */
  sourceResolutions = 0;

  constructor(o: LayerFactsOptions) {
    this.#o = o;
    this.#refreshMs = o.refreshMs ?? DEFAULT_IMAGE_REFRESH_MS;
    this.#images = new LRUCache({ max: Math.max(1, o.maxImages ?? DEFAULT_IMAGES_MAX) });
  }

  /**
   * The layer `key` of the image `ref` names, and the manifest it was found in. `persisted` settles
   * once the image is durable: the caller opens the layer meanwhile, and answers for it only after
   * (a layer served once must be servable again after a restart, offline).
   */
  async fromImage(ref: ImageReference, key: Digest): Promise<{ facts: LayerFacts; match: LayerMatch; persisted: Promise<void> }> {
    let known = this.#images.get(ref.string) ?? (await this.#fromDisk(ref));
    let match = known ? findLayer(known.image, key) : undefined;
    if (!match && this.#mayAskSource(known)) {
      // A partly scanned index is scanned again for this key (the source bounds each scan); a complete
      // image is asked for again only once per refresh interval, by one request for all waiters.
      const flight = known?.image.complete === false ? `${ref.string}\u0000${key}` : ref.string;
      const previous = known;
      known = await this.#resolving.run(flight, () => this.#fromSource(ref, key, previous));
      match = findLayer(known.image, key);
    }
    if (!match) {
      await known?.persisted; // no write left running behind an answer
      throw new IndexError('LAYER_NOT_FOUND', `${ref.string} has no layer with this blob or TOC digest`, { layer: key });
    }
    const l = match.layer;
    const facts: LayerFacts = {
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
    return { facts, match, persisted: known?.persisted ?? PERSISTED };
  }

  /** A layer served before, by key alone (store without `:ref`). */
  async fromStore(key: Digest): Promise<LayerFacts> {
    const e = await this.#o.metadata.loadLayerEntry(key);
    if (!e) throw new IndexError('LAYER_NOT_FOUND', 'layer never served and no reference given (store without :ref)', { layer: key });
    let openRef: ImageReference | undefined;
    for (const r of e.layer.refs) {
      try {
        openRef = parseReference(r);
        break;
      } catch (err) {
        this.#o.logger.debug('catalog.stored_ref_invalid', { layer: key, reference: r, error: err });
      }
    }
    return { ...e.layer, openRef };
  }

  #mayAskSource(known: KnownImage | undefined): boolean {
    return !known || known.image.complete === false || this.#o.now() - known.checkedAt >= this.#refreshMs;
  }

  async #fromDisk(ref: ImageReference): Promise<KnownImage | undefined> {
    const image = await this.#o.metadata.loadImage(ref);
    if (!image) return undefined;
    const known = { image, checkedAt: Number.NEGATIVE_INFINITY, persisted: PERSISTED };
    this.#images.set(ref.string, known);
    return known;
  }

  /**
   * Write `image` after any earlier write for the same reference (writes of one reference never
   * race: the ref file left on disk is the one resolved last). Never rejects: a failure is logged.
   */
  #persist(image: ResolvedImage, t1: number): Promise<void> {
    const ref = image.reference.string;
    const p = (this.#writes.get(ref) ?? PERSISTED)
      .then(() => this.#o.metadata.saveImage(image))
      .then(
        () => this.#o.logger.debug('catalog.image_persisted', { reference: ref, ms: Math.round(performance.now() - t1) }),
        (e: unknown) => this.#o.logger.warn('catalog.persist_image_failed', { reference: ref, error: e }),
      );
    this.#writes.set(ref, p);
    void p.then(() => {
      if (this.#writes.get(ref) === p) this.#writes.delete(ref);
    });
    return p;
  }

  async #fromSource(ref: ImageReference, key: Digest, previous: KnownImage | undefined): Promise<KnownImage> {
    const source = this.#o.source;
    if (!source) throw new IndexError('SOURCE_UNAVAILABLE', `${ref.string} is not cached and no source is configured`, {});
    this.sourceResolutions++;
    const t0 = performance.now();
    // An index is scanned only up to the manifest that has the key (sources bound the scan);
    // manifests found by earlier scans of the same index stay known (offline after a restart).
    const image = withKnownManifests(await source.resolve(ref, undefined, (m) => manifestHasKey(m, key)), previous?.image);
    const t1 = performance.now();
    const changed = previous?.image.digest !== image.digest || previous.image.manifests.length !== image.manifests.length;
    // Written beside the layers' opens, not before them: callers wait for `persisted` only to answer.
    const persisted = changed ? this.#persist(image, t1) : (previous?.persisted ?? PERSISTED);
    const known = { image, checkedAt: this.#o.now(), persisted };
    this.#images.set(ref.string, known);
    this.#o.logger.debug('catalog.image_resolved', { reference: ref.string, ms: Math.round(t1 - t0) });
    return known;
  }
}

/** `fresh`, plus the manifests `known` (same index, an earlier partial scan) had and `fresh` lacks. */
function withKnownManifests(fresh: ResolvedImage, known: ResolvedImage | undefined): ResolvedImage {
  if (!known || known.digest !== fresh.digest) return fresh;
  const have = new Set(fresh.manifests.map((m) => m.digest));
  const extra = known.manifests.filter((m) => !have.has(m.digest));
  return extra.length === 0 ? fresh : { ...fresh, manifests: [...fresh.manifests, ...extra] };
}
