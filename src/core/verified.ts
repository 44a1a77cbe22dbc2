/**
 * The type that says "these bytes were hashed and matched the digest they are handed around with".
 *
 * Chunk bytes are verified once, by whoever decodes them (formats/chunk-reader.ts, in process or in
 * a decode worker); everything downstream (the chunk cache, the object store's writes) takes
 * `VerifiedBytes` and does not hash again. A plain Buffer is not assignable to it, so bytes that
 * were not checked cannot reach those paths without alreadyVerified, the one place the brand is
 * made: for code that did the hashing itself against that digest (the in-process decoder, a decode
 * worker reporting its own comparison). Every caller says why in a comment; grep for it.
 */

declare const verifiedBrand: unique symbol;

/** Bytes whose digest was computed and compared with the digest they belong to. Read-only by convention. */
export type VerifiedBytes = Buffer & { readonly [verifiedBrand]: true };

/** Brand bytes the caller has already hashed and compared with their digest (see the file comment). */
export function alreadyVerified(data: Buffer): VerifiedBytes {
  return data as VerifiedBytes;
}
