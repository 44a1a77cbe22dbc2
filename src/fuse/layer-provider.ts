/**
 * What the FUSE side needs from the layer catalog (src/catalog/catalog.ts). Declared here, on the
 * consumer side, so the filesystem can be mounted and tested without the catalog and a future
 * catalog only has to be structurally compatible.
 *
 * refElem is the raw `<refB64>` path element (already checked to be canonical padded base64 of a
 * normalised reference), or undefined for a store configured without `:ref`.
 */
import type { Digest } from '../core/digest.js';
import type { LayerIndex, LayerNode } from '../formats/model.js';

export interface ServedLayerView {
  readonly key: Digest;
  readonly keyKind: 'blob' | 'toc';
  readonly index: LayerIndex;
  /** Exact bytes of the `info` file; the same bytes for every read. */
  readonly info: Buffer;
  readonly blobSize: number;
  /** Verified file bytes; clamps at EOF (returns fewer bytes only at the end of the file). */
  readFile(node: LayerNode, path: string, offset: number, length: number, signal?: AbortSignal): Promise<Buffer>;
  /** Optional: readFile's bytes as several buffers in order (views of the chunks: no copy into one). */
  readFileParts?(node: LayerNode, path: string, offset: number, length: number, signal?: AbortSignal): Promise<Buffer[]>;
  /** Raw compressed blob bytes (the `blob` file). */
  readBlob(offset: number, length: number, signal?: AbortSignal): Promise<Buffer>;
  /**
   * `cb` runs once when the layer is quarantined (it does not match its blob; at once when it
   * already is): a backend that serves cached bytes without asking readFile must stop doing so.
   */
  onQuarantine?(cb: () => void): void;
  /** Set once the layer is quarantined: a backend publishing its table again must flag it at once. */
  readonly quarantined?: Error | undefined;
}

export interface LayerProvider {
  /** undefined ⇒ the store does not serve this layer (ENOENT). Must answer negatives fast. */
  lookup(refElem: string | undefined, key: Digest): Promise<ServedLayerView | undefined>;
  /** `create(<layer>/use)`: one more c/storage user. A hint only. */
  use(refElem: string | undefined, key: Digest): void;
  /** `rmdir(<layer>)`: one user fewer. Also called for layers never seen. A hint only. */
  release(refElem: string | undefined, key: Digest): void;
  /**
   * Directory of the content-addressed chunk objects (`<dir>/sha256/<hex[0:2]>/<hex[2:]>`), each
   * holding exactly the verified bytes of the chunk named by its digest. The native backend reads
   * them directly (hashing each once per process before trusting it); absent ⇒ every read goes
   * through readFile.
   */
  readonly cachedObjectsDir?: string;
  /**
   * Chunk objects the native backend served straight from `cachedObjectsDir` (in batches, some
   * seconds late): they count as used for the cache's eviction order, as reads through readFile do.
   */
  noteCachedReads?(digests: readonly Digest[]): void;
}
