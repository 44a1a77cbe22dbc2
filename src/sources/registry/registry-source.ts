/**
 * The registry as a BlobSource: routes a reference through registries.conf (mirrors first, then the
 * primary location), resolves it with the shared image-resolver, and opens blobs as RegistryBlobs.
 * A failing mirror is logged and skipped; the primary's error is the one reported.
 */
import { readRanges, type RandomAccessBlob } from '../../core/blob.js';
import { SharedBufferPool, type BufferPoolOptions } from '../../core/buffer-pool.js';
import type { Digest } from '../../core/digest.js';
import { silentLogger, type Logger } from '../../core/log.js';
import { SourceError } from '../errors.js';
import { chainCredentials, type CredentialProvider } from '../credentials.js';
import { resolveImage, type DocumentFetcher } from '../image-resolver.js';
import type { ImageReference } from '../reference.js';
import type { BlobSource, ManifestWanted, ResolvedImage } from '../source.js';
import { DEFAULT_RETRY, type RetryPolicy } from './backoff.js';
import { HttpClient } from './http-client.js';
import { EMPTY_REGISTRIES_CONF, type RegistriesConf } from './registries-conf.js';
import { DEFAULT_RANGE_OPTIONS, type RangeOptions } from './registry-blob.js';
import { RegistryClient } from './registry-client.js';
import { routeFor, type Endpoint } from './registry-route.js';
import { MirrorFillGate, type MirrorFillOptions } from './mirror-fill.js';
import type { Dispatcher } from 'undici';
import type { BodyStream } from './body.js';

export interface RegistrySourceOptions {
  readonly registries?: RegistriesConf;
  /** Consulted in order; e.g. the auth-helper CredentialStore, then AuthFileCredentials. */
  readonly credentials?: readonly CredentialProvider[];
  readonly logger?: Logger;
  readonly retry?: Partial<RetryPolicy>;
  readonly ranges?: Partial<RangeOptions>;
  readonly now?: () => number;
  readonly timeoutMs?: number;
  readonly connectionsPerHost?: number;
  readonly userAgent?: string;
  readonly dispatcher?: Dispatcher;
  /** Platform manifests fetched per image index at most (default DEFAULT_MAX_INDEX_ENTRIES). */
  readonly maxIndexEntries?: number;
  /** Waiting for a proxy-mode mirror to store a blob before reading it in parallel ranges. */
  readonly mirrorFill?: Partial<MirrorFillOptions>;
  /** Reuse of range-body memory (core/buffer-pool.ts; defaults: 32 MiB idle, buffers up to 16 MiB). */
  readonly bufferPool?: BufferPoolOptions;
}

export class RegistrySource implements BlobSource {
  readonly name = 'registry';
  readonly #conf: RegistriesConf;
  readonly #http: HttpClient;
  readonly #client: RegistryClient;
  readonly #logger: Logger;
  readonly #maxIndexEntries: number | undefined;
  readonly #fill: MirrorFillGate;

  constructor(o: RegistrySourceOptions = {}) {
    this.#conf = o.registries ?? EMPTY_REGISTRIES_CONF;
    this.#logger = o.logger ?? silentLogger;
    this.#maxIndexEntries = o.maxIndexEntries;
    this.#fill = new MirrorFillGate(o.mirrorFill, o.now ?? Date.now);
    this.#http = new HttpClient({
      credentials: chainCredentials(...(o.credentials ?? [])),
      logger: this.#logger,
      now: o.now ?? Date.now,
      timeoutMs: o.timeoutMs ?? 30_000,
      connectionsPerHost: o.connectionsPerHost ?? 8,
      userAgent: o.userAgent ?? 'lazy-als/0.1',
      maxRedirects: 5,
      ...(o.dispatcher ? { dispatcher: o.dispatcher } : {}),
    });
    this.#client = new RegistryClient({
      http: this.#http,
      retry: { ...DEFAULT_RETRY, ...o.retry },
      logger: this.#logger,
      ranges: { ...DEFAULT_RANGE_OPTIONS, ...o.ranges },
      pool: new SharedBufferPool(o.bufferPool),
    });
  }

  endpoints(ref: ImageReference): readonly Endpoint[] {
    return routeFor(this.#conf, ref).endpoints;
  }

  async resolve(ref: ImageReference, signal?: AbortSignal, want?: ManifestWanted): Promise<ResolvedImage> {
    const got = await this.#firstEndpoint(ref, 'resolve', async (ep) => {
      const fetcher: DocumentFetcher = {
        manifest: (t, s) => this.#client.manifest(ep, t, s),
        config: (d, _size, s) => this.#client.smallBlob(ep, d, s),
      };
      return resolveImage(ref, fetcher, `registry ${ep.origin}/${ep.repository}`, this.#logger, signal, {
        ...(want ? { want } : {}),
        ...(this.#maxIndexEntries !== undefined ? { maxIndexEntries: this.#maxIndexEntries } : {}),
      });
    });
    if (!got) throw new SourceError('IMAGE_NOT_FOUND', `image ${ref.string} not found`, { source: ref.string, status: 404 });
    return got;
  }

  async openBlob(ref: ImageReference, digest: Digest, size: number | undefined, signal?: AbortSignal): Promise<RandomAccessBlob> {
    const eps = this.endpoints(ref);
    const open = async (from: number): Promise<{ blob: RandomAccessBlob; at: number } | undefined> => {
      for (let i = from; i < eps.length; i++) {
        const ep = eps[i]!;
        try {
          const blob = ep.mirror ? await this.#openFromMirror(ep, digest, size, signal) : await this.#client.openBlob(ep, digest, size, signal);
          if (blob !== undefined) return { blob, at: i };
        } catch (e) {
          if (!ep.mirror) throw e;
          this.#logger.warn('registry.mirror-failed', { op: 'openBlob', mirror: ep.origin, repository: ep.repository, error: e });
        }
      }
      return undefined;
    };
    const first = await open(0);
    if (!first) throw new SourceError('BLOB_NOT_FOUND', `blob not found for ${ref.string}`, { blob: digest, source: ref.string, status: 404 });
    if (!eps[first.at]!.mirror) return first.blob;
    // Opened from a mirror: when the mirror fails later (a pull-through cache that dies), the reads
    // move on to the next endpoint, ending with the origin (the bytes are verified either way).
    let cur = first;
    const logger = this.#logger;
    const failover = async <T>(what: (b: RandomAccessBlob) => Promise<T>, sig?: AbortSignal): Promise<T> => {
      for (;;) {
        const c = cur;
        try {
          return await what(c.blob);
        } catch (e) {
          if (sig?.aborted || !eps[c.at]!.mirror) throw e;
          logger.warn('registry.mirror-failed', { op: 'read', mirror: eps[c.at]!.origin, repository: eps[c.at]!.repository, error: e });
          if (cur === c) {
            const next = await open(c.at + 1);
            if (!next) throw e;
            cur = next;
            void c.blob.close?.().catch(() => undefined);
          }
        }
      }
    };
    return {
      size: first.blob.size,
      get name() {
        return cur.blob.name;
      },
      read: (offset, length, sig) => failover((b) => b.read(offset, length, sig), sig),
      readMany: (ranges, sig) => failover((b) => readRanges(b, ranges, sig), sig),
      // every endpoint's blob gives memory back to this source's one pool
      release: (bufs) => cur.blob.release?.(bufs),
      close: async () => {
        await cur.blob.close?.();
      },
    };
  }

  /**
   * Open through a mirror, gated per blob (see mirror-fill.ts): the first open goes alone and, when
   * the mirror answered its probe with the whole blob (a 200: not stored yet, streaming from the
   * origin), waits until the mirror serves ranges itself, so the parallel reads that follow do not
   * each make it fetch the blob from the origin again.
   */
  #openFromMirror(ep: Endpoint, digest: Digest, size: number | undefined, signal?: AbortSignal): Promise<RandomAccessBlob | undefined> {
    const open = (): Promise<RandomAccessBlob | undefined> => this.#client.openBlob(ep, digest, size, signal);
    const first = async (): Promise<RandomAccessBlob | undefined> => {
      const blob = await this.#client.openBlob(ep, digest, size, signal);
      if (blob !== undefined) this.#fill.saw(ep.origin, blob.rangeHonoured);
      if (blob === undefined || blob.rangeHonoured) return blob;
      const stored = await this.#fill.untilStored(ep.origin, async (s) => (await this.#client.openBlob(ep, digest, size, s))?.rangeHonoured === true, signal);
      this.#logger.debug('registry.mirror-fill', { mirror: ep.origin, blob: digest, stored });
      return blob;
    };
    return this.#fill.once(`${ep.origin}/${ep.repository}@${digest}`, first, open, signal);
  }

  /** Whole-blob stream (for export), from the first endpoint that has it. */
  async streamBlob(ref: ImageReference, digest: Digest, signal?: AbortSignal): Promise<{ body: BodyStream; length: number | undefined }> {
    const got = await this.#firstEndpoint(ref, 'streamBlob', async (ep) => {
      try {
        return await this.#client.streamBlob(ep, digest, signal);
      } catch (e) {
        if (e instanceof SourceError && e.code === 'BLOB_NOT_FOUND') return undefined;
        throw e;
      }
    });
    if (!got) throw new SourceError('BLOB_NOT_FOUND', `blob not found for ${ref.string}`, { blob: digest, source: ref.string, status: 404 });
    return got;
  }

  async #firstEndpoint<T>(ref: ImageReference, op: string, f: (ep: Endpoint) => Promise<T | undefined>): Promise<T | undefined> {
    for (const ep of this.endpoints(ref)) {
      try {
        const r = await f(ep);
        if (r !== undefined) return r;
      } catch (e) {
        if (!ep.mirror) throw e;
        this.#logger.warn('registry.mirror-failed', { op, mirror: ep.origin, repository: ep.repository, error: e });
      }
    }
    return undefined;
  }

  async close(): Promise<void> {
    await this.#http.close();
  }
}
