/**
 * Where the metrics' events come from, without the measured code knowing: wrappers around the
 * seams the daemon wires anyway (the registry source, the formats entry points the catalog calls,
 * the provider the filesystem asks, the prefetcher). Each wrapper reports to a `Telemetry` and
 * otherwise behaves exactly like what it wraps (same results, same errors).
 */
import type { RandomAccessBlob } from '../core/blob.js';
import { LazyAlsError } from '../core/errors.js';
import type { ChunkCache } from '../cache/chunk-cache.js';
import { Prefetcher, type PrefetcherOptions, type PrefetchTarget } from '../cache/prefetch.js';
import { DEFAULT_FORMATS, type LayerFormats } from '../catalog/catalog.js';
import type { LayerProvider, ServedLayerView } from '../fuse/layer-provider.js';
import type { BlobSource } from '../sources/source.js';
import type { Telemetry } from './metrics.js';

const since = (t0: bigint): number => Number(process.hrtime.bigint() - t0) / 1e9;

async function timed<T>(run: () => Promise<T>, report: (seconds: number, result: T | undefined, error: unknown) => void): Promise<T> {
  const t0 = process.hrtime.bigint();
  try {
    const r = await run();
    report(since(t0), r, undefined);
    return r;
  } catch (e) {
    report(since(t0), undefined, e ?? new Error('rejected'));
    throw e;
  }
}

/** A registry source whose blob reads are reported as registry fetches (labelled by blob digest). */
export function meteredSource(source: BlobSource, t: Telemetry): BlobSource {
  return {
    name: source.name,
    resolve: (ref, signal, want) => source.resolve(ref, signal, want),
    async openBlob(ref, digest, size, signal, bound) {
      const blob = await source.openBlob(ref, digest, size, signal, bound);
      const report = (bufs: readonly Buffer[] | undefined, seconds: number, error: unknown): void =>
        t.registryFetch(digest, bufs ? bufs.reduce((n, b) => n + b.length, 0) : 0, seconds, error === undefined);
      const metered: RandomAccessBlob = {
        size: blob.size,
        name: blob.name,
        read: (offset, length, sig) => timed(() => blob.read(offset, length, sig), (s, b, e) => report(b ? [b] : undefined, s, e)),
        ...(blob.readMany ? { readMany: (ranges, sig) => timed(() => blob.readMany!(ranges, sig), (s, b, e) => report(b, s, e)) } : {}),
        ...(blob.release ? { release: (bufs) => blob.release!(bufs) } : {}),
        ...(blob.close ? { close: () => blob.close!() } : {}),
      };
      return metered;
    },
    ...(source.close ? { close: () => source.close!() } : {}),
  };
}

/** The formats entry points, timed; a refused layer is counted by its error code. */
export function meteredFormats(t: Telemetry, formats: LayerFormats = DEFAULT_FORMATS): LayerFormats {
  return {
    openLayer: (blob, options) => {
      const layer = options.expectedTocDigest ?? options.descriptor?.digest ?? blob.name;
      return timed(() => formats.openLayer(blob, options), (s, _r, e) => {
        if (e === undefined) t.toc(layer, 'fetch', s);
        else t.refused(layer, e instanceof LazyAlsError ? e.code : 'INTERNAL');
      });
    },
    loadLayerRecord: async (record, limits) => {
      const t0 = process.hrtime.bigint();
      const index = await formats.loadLayerRecord(record, limits);
      t.toc(index.tocDigest ?? index.blobDigest ?? 'unknown', 'record', since(t0));
      return index;
    },
  };
}

/** The provider the filesystem asks: lookups timed, layer reads timed (views wrapped once each). */
export function meteredProvider(provider: LayerProvider, t: Telemetry): LayerProvider {
  const views = new WeakMap<ServedLayerView, ServedLayerView>();
  const wrap = (layer: ServedLayerView): ServedLayerView => {
    let v = views.get(layer);
    if (!v) {
      const name = layer.key;
      const readFile: ServedLayerView['readFile'] = (node, path, offset, length, signal) =>
        timed(() => layer.readFile(node, path, offset, length, signal), (s, b, e) => t.read(name, 'file', b?.length ?? 0, s, e === undefined));
      const readFileParts: ServedLayerView['readFileParts'] = layer.readFileParts
        ? (node, path, offset, length, signal) =>
            timed(
              () => layer.readFileParts!(node, path, offset, length, signal),
              (s, b, e) => t.read(name, 'file', b ? b.reduce((n, x) => n + x.length, 0) : 0, s, e === undefined),
            )
        : undefined;
      const readBlob: ServedLayerView['readBlob'] = (offset, length, signal) =>
        timed(() => layer.readBlob(offset, length, signal), (s, b, e) => t.read(name, 'blob', b?.length ?? 0, s, e === undefined));
      // Everything else is the layer's own (methods bound to it: it may keep private state).
      v = new Proxy(layer, {
        get(target, prop) {
          if (prop === 'readFile') return readFile;
          if (prop === 'readFileParts') return readFileParts;
          if (prop === 'readBlob') return readBlob;
          const x: unknown = Reflect.get(target, prop, target);
          return typeof x === 'function' ? (x as (...a: unknown[]) => unknown).bind(target) : x;
        },
      });
      views.set(layer, v);
    }
    return v;
  };
  return new Proxy(provider, {
    get(target, prop) {
      if (prop === 'lookup') {
        return async (refElem: string | undefined, key: Parameters<LayerProvider['lookup']>[1]) => {
          const t0 = process.hrtime.bigint();
          const layer = await target.lookup(refElem, key);
          t.lookup(key, since(t0), layer ? 'found' : 'absent');
          return layer ? wrap(layer) : undefined;
        };
      }
      const x: unknown = Reflect.get(target, prop, target);
      return typeof x === 'function' ? (x as (...a: unknown[]) => unknown).bind(target) : x;
    },
  });
}

/** A Prefetcher that reports the chunk bytes each prefetch batch brought into the cache. */
export class MeteredPrefetcher extends Prefetcher {
  readonly #t: Telemetry;
  readonly #cache: ChunkCache;

  constructor(opts: PrefetcherOptions, cache: ChunkCache, t: Telemetry) {
    super(opts);
    this.#t = t;
    this.#cache = cache;
  }

  override start(layer: PrefetchTarget): Promise<void> {
    const key = layer.name.slice(layer.name.lastIndexOf('/') + 1);
    const cache = this.#cache;
    const t = this.#t;
    return super.start({
      name: layer.name,
      index: layer.index,
      async ensureCached(requests, signal) {
        // Which chunks are missing is known only here; has() is a stat (prefetch is background work).
        let missing = 0;
        const seen = new Set<string>();
        for (const r of requests) {
          if (r.chunk.zeros || seen.has(r.chunk.digest)) continue;
          seen.add(r.chunk.digest);
          if (!(await cache.has(r.chunk.digest))) missing += r.chunk.size;
        }
        const n = await layer.ensureCached(requests, signal);
        if (n > 0 && missing > 0) t.prefetched(key, missing);
        return n;
      },
    });
  }
}

export interface RefusedLayer {
  /** The key or blob digest the refusal names. */
  readonly layer: string;
  /** Error code (e.g. TOC_DIGEST_MISMATCH). */
  readonly reason: string;
  /** When (ms since the epoch). */
  readonly at: number;
}

/**
 * What `status` shows beyond the catalog's own counters: when each layer was last used (lookup or
 * read) and the most recent refusals. Bounded: one timestamp per layer key seen, the last
 * MAX_REFUSED refusals.
 */
export class LayerActivity implements Telemetry {
  static readonly MAX_REFUSED = 64;
  readonly #last = new Map<string, number>();
  readonly #refused: RefusedLayer[] = [];
  readonly #now: () => number;

  constructor(now: () => number = Date.now) {
    this.#now = now;
  }

  lastAccess(key: string): number | undefined {
    return this.#last.get(key);
  }

  get refusedLayers(): readonly RefusedLayer[] {
    return [...this.#refused];
  }

  lookup(layer: string, _s: number, result: 'found' | 'absent'): void {
    if (result === 'found') this.#last.set(layer, this.#now());
  }
  read(layer: string): void {
    this.#last.set(layer, this.#now());
  }
  refused(layer: string, reason: string): void {
    this.#refused.push({ layer, reason, at: this.#now() });
    if (this.#refused.length > LayerActivity.MAX_REFUSED) this.#refused.shift();
  }
  toc(): void {}
  registryFetch(): void {}
  prefetched(): void {}
  fuseOp(): void {}
}

/** Report every event to each of `ts`. */
export function teeTelemetry(...ts: Telemetry[]): Telemetry {
  return {
    lookup: (...a) => ts.forEach((t) => t.lookup(...a)),
    toc: (...a) => ts.forEach((t) => t.toc(...a)),
    refused: (...a) => ts.forEach((t) => t.refused(...a)),
    registryFetch: (...a) => ts.forEach((t) => t.registryFetch(...a)),
    read: (...a) => ts.forEach((t) => t.read(...a)),
    prefetched: (...a) => ts.forEach((t) => t.prefetched(...a)),
    fuseOp: (...a) => ts.forEach((t) => t.fuseOp(...a)),
  };
}
