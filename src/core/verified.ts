/**
 * The type that says "these bytes were hashed and matched the digest they are handed around with".
 *
 * Chunk bytes are verified once, by whoever decodes them (formats/chunk-reader.ts, in process or in
 * a decode worker); everything downstream (the chunk cache, the object store's writes) takes
 * `VerifiedBytes` and does not hash again. A plain Buffer is not assignable to it, so bytes that
 * were not checked cannot reach those paths without one of the two functions below — the only
 * places the brand is made:
 *
 *  - checkedBytes: hashes here and throws DigestMismatchError on a mismatch;
 *  - alreadyVerified: for code that did the hashing itself against that digest (a decode worker
 *    reporting its own comparison). Every caller says why in a comment; grep for it.
 */
import { verifyBytes, type Digest } from './digest.js';
import type { ErrorContext } from './errors.js';

declare const verifiedBrand: unique symbol;

/** Bytes whose digest was computed and compared with the digest they belong to. Read-only by convention. */
export type VerifiedBytes = Buffer & { readonly [verifiedBrand]: true };

/** Hash `data` and brand it, or throw DigestMismatchError naming `what`. */
export function checkedBytes(data: Buffer, expected: Digest, what: string, context: ErrorContext = {}): VerifiedBytes {
  return verifyBytes(data, expected, what, context) as VerifiedBytes;
}

/** Brand bytes the caller has already hashed and compared with their digest (see the file comment). */
export function alreadyVerified(data: Buffer): VerifiedBytes {
  return data as VerifiedBytes;
}
