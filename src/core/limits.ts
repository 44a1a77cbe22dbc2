/**
 * Named limits, with units, that keep hostile input from turning into huge allocations or hangs.
 * Readers take a Limits object (defaults below) so tests can shrink them.
 */
export interface Limits {
  /** Largest TOC we accept, compressed or not, in bytes. containers/storage refuses > 150 MiB. */
  readonly maxTocBytes: number;
  /** Largest number of TOC entries. */
  readonly maxEntries: number;
  /** Largest uncompressed chunk, in bytes (a whole unchunked file counts as one chunk). */
  readonly maxChunkBytes: number;
  /** Largest compressed span fetched to decode one chunk, in bytes. */
  readonly maxCompressedSpanBytes: number;
  /** Longest path, in bytes. */
  readonly maxPathBytes: number;
  /** Largest xattr value and total xattr bytes per entry. */
  readonly maxXattrBytes: number;
  /** Largest tar header extension (PAX / GNU long name) in bytes, and the sum of those before one entry. */
  readonly maxTarHeaderExtBytes: number;
  /** Total xattr bytes (names + values) of all entries of one layer. */
  readonly maxLayerXattrBytes: number;
}

export const DEFAULT_LIMITS: Limits = Object.freeze({
  maxTocBytes: 150 * 1024 * 1024,
  maxEntries: 4_000_000,
  maxChunkBytes: 64 * 1024 * 1024,
  maxCompressedSpanBytes: 96 * 1024 * 1024,
  maxPathBytes: 4096,
  maxXattrBytes: 64 * 1024,
  maxTarHeaderExtBytes: 1024 * 1024,
  maxLayerXattrBytes: 16 * 1024 * 1024,
});
