/**
 * The type that says "these bytes were hashed in this process and matched the digest they are
 * handed around with" — hashed, not merely found unchanged: bytes trusted because a file's identity
 * (dev, inode, size, ctime) still matches one verified earlier (ObjectStore.readRange, the C side's
 * open_verified) are not VerifiedBytes, and must not be branded as such.
 *
 * Chunk bytes are verified once, by whoever decodes them (formats/chunk-reader.ts, in process or in
 * a decode worker) or reads them back (ObjectStore.get/getMany hash every object they return);
 * everything downstream (the chunk cache, the object store's writes) takes `VerifiedBytes` and does
 * not hash again. A plain Buffer is not assignable to it, so bytes that were not checked cannot
 * reach those paths without alreadyVerified, the one place the brand is made: for code that did the
 * hashing itself against that digest, or that built bytes whose digest was computed from them
 * (zero-filled chunks). Every caller says why in a comment; grep for it.
 */

declare const verifiedBrand: unique symbol;

/** Bytes whose digest was computed and compared with the digest they belong to. Read-only by convention. */
export type VerifiedBytes = Buffer & { readonly [verifiedBrand]: true };

/** Brand bytes the caller has already hashed and compared with their digest (see the file comment). */
export function alreadyVerified(data: Buffer): VerifiedBytes {
  return data as VerifiedBytes;
}
