/**
 * Several sources tried in order (e.g. the dfs layout first, then the registry; or the dfs alone for
 * a fully offline store). resolve() answers from the first source that has the image, openBlob()
 * from the first that has the blob. "Does not have it" (IMAGE_NOT_FOUND / BLOB_NOT_FOUND) moves on;
 * other errors are remembered and, if no later source answers, the first one is thrown.
 */
import type { RandomAccessBlob } from '../core/blob.js';
import type { Digest } from '../core/digest.js';
import { silentLogger, type Logger } from '../core/log.js';
import { SourceError } from './errors.js';
import type { ImageReference } from './reference.js';
import type { BlobSource, ManifestWanted, ResolvedImage } from './source.js';

function isNotFound(e: unknown): boolean {
  return e instanceof SourceError && (e.code === 'IMAGE_NOT_FOUND' || e.code === 'BLOB_NOT_FOUND');
}

export class SourceChain implements BlobSource {
  readonly name: string;
  readonly sources: readonly BlobSource[];
  readonly #logger: Logger;

  constructor(sources: readonly BlobSource[], logger: Logger = silentLogger) {
    if (sources.length === 0) throw new SourceError('REGISTRY_CONFIG', 'a source chain needs at least one source');
    this.sources = sources;
    this.name = sources.map((s) => s.name).join(' → ');
    this.#logger = logger;
  }

  async resolve(ref: ImageReference, signal?: AbortSignal, want?: ManifestWanted): Promise<ResolvedImage> {
    return this.#first(
      'resolve',
      (s) => s.resolve(ref, signal, want),
      () => new SourceError('IMAGE_NOT_FOUND', `no source has ${ref.string}`, { source: this.name }),
    );
  }

  async openBlob(ref: ImageReference, digest: Digest, size: number | undefined, signal?: AbortSignal, bound?: boolean): Promise<RandomAccessBlob> {
    return this.#first(
      'openBlob',
      (s) => s.openBlob(ref, digest, size, signal, bound),
      () => new SourceError('BLOB_NOT_FOUND', `no source has the blob of ${ref.string}`, { blob: digest, source: this.name }),
    );
  }

  async #first<T>(op: string, f: (s: BlobSource) => Promise<T>, notFound: () => SourceError): Promise<T> {
    let firstError: unknown;
    for (const s of this.sources) {
      try {
        return await f(s);
      } catch (e) {
        if (!isNotFound(e)) {
          firstError ??= e;
          this.#logger.warn('source.chain-error', { op, source: s.name, error: e });
        }
      }
    }
    throw firstError ?? notFound();
  }

  async close(): Promise<void> {
    await Promise.all(this.sources.map((s) => s.close?.()));
  }
}
