/**
 * Named limits, with units, that keep hostile input from turning into huge allocations or hangs.
 * Readers take a Limits object (defaults below) so tests can shrink them.
 */
export interface Limits {
  /** Largest TOC we accept, compressed or not, in bytes (containers/storage refuses > 150 MiB). */
  readonly maxTocBytes: number;
  /** Most entries (TOC entries or tar headers) per layer; checked before a TOC is parsed and while a tar streams. */
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
  /**
   * JS heap (old generation) the worker that builds one layer's index may use, in bytes. Over it the
   * layer is refused (TOC_TOO_LARGE); the whole open then costs the daemon at most about this much.
   */
  readonly maxIndexHeapBytes: number;
}

export const DEFAULT_LIMITS: Limits = Object.freeze({
  // An index costs ~0.55 KiB per entry once built and up to ~3 KiB per entry while it is built or a
  // TOC is parsed: these two keep one layer's index well inside the daemon's 200 MiB budget. A
  // refused layer is pulled by podman itself. docs/robustness.md has the measurements.
  maxTocBytes: 64 * 1024 * 1024,
  maxEntries: 100_000,
  maxChunkBytes: 64 * 1024 * 1024,
  maxCompressedSpanBytes: 96 * 1024 * 1024,
  maxPathBytes: 4096,
  maxXattrBytes: 64 * 1024,
  maxTarHeaderExtBytes: 1024 * 1024,
  maxLayerXattrBytes: 16 * 1024 * 1024,
  maxIndexHeapBytes: 192 * 1024 * 1024,
});
