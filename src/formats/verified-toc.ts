/**
 * A TOC whose bytes hashed to the digest they were pinned to: the one kind of TOC the index builders
 * (estargz/build-index.ts, zstd-chunked/reader.ts) and the TOC parser accept. Only `verify` creates
 * one (private constructor, and the private field makes the type nominal: no object literal or other
 * class fits it), so an index built from TOC bytes nobody checked does not compile.
 *
 * `bytes` are the TOC exactly as hashed: eStargz's TOC JSON, zstd:chunked's compressed manifest.
 */
import { DigestHasher, type Digest } from '../core/digest.js';
import type { ErrorContext } from '../core/errors.js';
import { FormatError } from './errors.js';

export class VerifiedToc {
  // Never read: a private field makes the class nominal (a structurally equal object is not a VerifiedToc).
  // biome-ignore lint/correctness/noUnusedPrivateClassMembers: the field is the brand
  readonly #brand = true;
  readonly bytes: Buffer;
  readonly digest: Digest;
  /** false only where the caller allowed an unpinned TOC (`lazy-als inspect` of a local blob): `digest` is then what it hashes to. */
  readonly pinned: boolean;

  private constructor(bytes: Buffer, digest: Digest, pinned: boolean) {
    this.bytes = bytes;
    this.digest = digest;
    this.pinned = pinned;
  }

  /**
   * Hash `bytes` with the expected digest's algorithm and compare, before anything looks inside
   * them. `expected` undefined (an unpinned TOC the caller allowed) records the sha256 they hash to.
   */
  static verify(bytes: Buffer, expected: Digest | undefined, what: string, ctx: ErrorContext): VerifiedToc {
    const actual = (expected !== undefined ? DigestHasher.for(expected) : new DigestHasher()).update(bytes).digest();
    if (expected !== undefined && actual !== expected) {
      throw new FormatError('TOC_DIGEST_MISMATCH', `${what} hashes to ${actual}, expected ${expected}`, ctx);
    }
    return new VerifiedToc(bytes, actual, expected !== undefined);
  }
}
