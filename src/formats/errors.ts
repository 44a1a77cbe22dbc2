import { codedError } from '../core/errors.js';

/**
 * Everything a format reader can reject. Codes are stable (tests and the errno table use them).
 */
export type FormatErrorCode =
  | 'FOOTER_INVALID' // no known footer, or a footer whose fields are malformed
  | 'FOOTER_TRUNCATED' // blob too small for the footer it claims
  | 'TOC_OUT_OF_RANGE' // TOC offset/length outside the blob, or overlapping the footer
  | 'TOC_TOO_LARGE' // TOC over Limits.maxTocBytes
  | 'TOC_DIGEST_MISMATCH' // TOC bytes do not hash to the expected TOC digest
  | 'TOC_MALFORMED' // not JSON, wrong version, wrong field types, trailing data
  | 'TOC_MISSING' // no TOC digest to check against where one is required
  | 'ENTRY_INVALID' // bad type, negative/absurd size, missing required field
  | 'ENTRY_PATH_UNSAFE' // absolute path, "..", NUL, empty component, too long
  | 'ENTRY_DUPLICATE' // same path twice
  | 'ENTRY_LINK_INVALID' // hardlink to a missing/invalid target
  | 'CHUNK_INVALID' // chunk outside the blob, overlapping, gaps, wrong order, missing digest
  | 'CHUNK_DIGEST_MISMATCH' // decoded chunk does not hash to its recorded digest
  | 'DECOMPRESS_FAILED' // corrupt compressed data
  | 'DECOMPRESS_LIMIT' // decompressed output larger than declared (bomb)
  | 'TAR_INVALID' // bad tar header (checksum, field)
  | 'BLOB_DIGEST_MISMATCH' // whole-blob digest mismatch (plain layers)
  | 'DIFFID_MISMATCH' // uncompressed digest mismatch (plain layers)
  | 'FORMAT_UNKNOWN' // not a layer format we read
  | 'FORMAT_CONFLICT'; // blob bytes contradict the media type / annotations

declare module '../core/errors.js' {
  interface ErrorCodes extends Record<FormatErrorCode, true> {}
}

export class FormatError extends codedError<FormatErrorCode>() {}
