/**
 * The layer blobs opened through the source: one handle per blob digest, shared by every reader of
 * it, reopened after a failure, closed with the catalog. Opened only on a cache miss, so a fully
 * cached layer is served after a restart without touching the network.
 */
import type { RandomAccessBlob } from '../core/blob.js';
import type { Digest } from '../core/digest.js';
import type { Logger } from '../core/log.js';
import type { BlobSource } from '../sources/source.js';
import { IndexError } from './errors.js';
import type { LayerFacts } from './layer-facts.js';
import { PromiseMemo } from './single-flight.js';

export class BlobHandles {
  /** By blob digest, and whether the handle was opened bound to it (see open). */
  readonly #memo = new PromiseMemo<string, RandomAccessBlob>();

  constructor(
    readonly source: BlobSource | undefined,
    readonly logger: Logger,
  ) {}

  open(facts: LayerFacts, signal?: AbortSignal): Promise<RandomAccessBlob> {
    const source = this.source;
    const ref = facts.openRef;
    if (!source || !ref) {
      const why = source ? 'no reference known to open the blob with' : 'no source configured';
      return Promise.reject(new IndexError('SOURCE_UNAVAILABLE', why, { layer: facts.key, blob: facts.blobDigest }));
    }
    // A blob-digest key (podman ≤ 5.0) names the whole blob: a source must deliver exactly that blob
    // (a dfs file is hashed whole first). A TOC-digest key is bound by its TOC (verified against the key).
    const bound = facts.keyKind === 'blob';
    return this.#memo.get(`${facts.blobDigest}${bound ? ' bound' : ''}`, () => source.openBlob(ref, facts.blobDigest, facts.blobSize, signal, bound)).promise;
  }

  /** Close every opened blob (source connections); they reopen on demand. */
  async close(): Promise<void> {
    for (const p of this.#memo.drain()) {
      const b = await p.catch(() => undefined); // a failed open was logged by its caller
      await b?.close?.().catch((e: unknown) => this.logger.debug('catalog.blob_close_failed', { error: e }));
    }
  }
}
