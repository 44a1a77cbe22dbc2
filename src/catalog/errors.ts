import { codedError } from '../core/errors.js';

/**
 * Why the catalog will not serve a layer, or a served layer cannot produce bytes. Lookups turn all of
 * these into "not found" (ENOENT: podman falls back to its own pull); reads map them to EIO.
 */
export type IndexErrorCode =
  | 'LAYER_NOT_FOUND' // no image/layer matches (ref, key), or no ref and the key was never served
  | 'LAYER_NOT_SERVABLE' // found, but the info file would be wrong (no config diffID) or the TOC does not match the key
  | 'SOURCE_UNAVAILABLE' // not cached and no source configured / reference unknown for a ref-less layer
  | 'BLOB_UNAVAILABLE' // the `blob` file cannot be produced (size mismatch, or too large to hold in memory on a full disk)
  | 'LAYER_QUARANTINED'; // served, then found not to match its blob (full-read check): every read is EIO

declare module '../core/errors.js' {
  interface ErrorCodes extends Record<IndexErrorCode, true> {}
}

export class IndexError extends codedError<IndexErrorCode>() {}
