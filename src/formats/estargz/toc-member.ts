/**
 * Getting verified TOC JSON bytes out of a blob: the pieces shared by the gzip and zstd readers.
 *
 * Order matters: the JSON bytes are hashed and compared with the pinned TOC digest before anything
 * looks inside them. Decompression is always bounded by the number of bytes we need (never "inflate
 * the whole member"), so a TOC member that inflates hugely costs at most maxTocBytes + 512.
 */
import { isDigest, type Digest } from '../../core/digest.js';
import type { ErrorContext } from '../../core/errors.js';
import type { Limits } from '../../core/limits.js';
import { decodePrefix } from '../decompress.js';
import { FormatError } from '../errors.js';
import type { OpenLayerOptions } from '../layer-reader.js';
import { STARGZ_TOC_DIGEST_ANNOTATION } from '../constants.js';

export const TOC_DIGEST_ANNOTATION = STARGZ_TOC_DIGEST_ANNOTATION;
const TOC_TAR_NAME = 'stargz.index.json';

/** The TOC digest the TOC must hash to, or undefined if the caller allows an unpinned TOC. */
export function expectedTocDigest(options: OpenLayerOptions, ctx: ErrorContext): Digest | undefined {
  const ann = options.descriptor?.annotations?.[TOC_DIGEST_ANNOTATION];
  if (options.expectedTocDigest !== undefined) {
    // The store key and the manifest annotation naming different TOCs means we were handed the wrong layer.
    if (ann !== undefined && ann !== options.expectedTocDigest) {
      throw new FormatError('FORMAT_CONFLICT', `expected TOC digest ${options.expectedTocDigest} differs from the annotation ${ann}`, ctx);
    }
    return options.expectedTocDigest;
  }
  if (ann !== undefined) {
    if (!isDigest(ann)) throw new FormatError('TOC_MISSING', `annotation ${TOC_DIGEST_ANNOTATION} is not a valid digest`, ctx);
    return ann;
  }
  if (options.allowUnpinnedToc) return undefined;
  throw new FormatError('TOC_MISSING', `no TOC digest to verify the TOC against (annotation ${TOC_DIGEST_ANNOTATION})`, ctx);
}

/** Parse a tar numeric field: octal (NUL/space terminated) or GNU base-256. */
function tarNumber(field: Buffer, ctx: ErrorContext): number {
  if (((field[0] ?? 0) & 0x80) !== 0) {
    if (field[0] !== 0x80) throw new FormatError('TAR_INVALID', 'negative or huge base-256 tar number', ctx);
    let v = 0;
    for (let i = 1; i < field.length; i++) {
      v = v * 256 + field[i]!;
      if (v > Number.MAX_SAFE_INTEGER) throw new FormatError('TAR_INVALID', 'tar number out of range', ctx);
    }
    return v;
  }
  const s = field.toString('latin1').replace(/[\0 ]+$/, '').replace(/^ +/, '');
  if (s === '') return 0;
  if (!/^[0-7]+$/.test(s)) throw new FormatError('TAR_INVALID', `bad octal tar field ${JSON.stringify(s)}`, ctx);
  return parseInt(s, 8);
}

function cString(b: Buffer): string {
  const nul = b.indexOf(0);
  return b.subarray(0, nul < 0 ? b.length : nul).toString('utf8');
}

/**
 * The gzip TOC member decompresses to a tar header named stargz.index.json followed by the JSON
 * (exactly `size` bytes), padding and the tar EOF. Returns the JSON bytes (unverified).
 */
export async function extractTocFromGzipMember(member: Buffer, limits: Limits, ctx: ErrorContext): Promise<Buffer> {
  const hdr = await decodePrefix('gzip', member, 512, ctx);
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 0x20 : hdr[i]!;
  if (sum === 8 * 0x20) throw new FormatError('TAR_INVALID', 'TOC member starts with a zero block', ctx);
  if (tarNumber(hdr.subarray(148, 156), ctx) !== sum) throw new FormatError('TAR_INVALID', 'TOC tar header checksum mismatch', ctx);
  let name = cString(hdr.subarray(0, 100));
  if (hdr.subarray(257, 262).toString('latin1') === 'ustar') {
    const prefix = cString(hdr.subarray(345, 500));
    if (prefix !== '') name = `${prefix}/${name}`;
  }
  if (name !== TOC_TAR_NAME) {
    throw new FormatError('TOC_MALFORMED', `first entry of the TOC member is ${JSON.stringify(name.slice(0, 100))}, not ${TOC_TAR_NAME}`, ctx);
  }
  const flag = hdr[156];
  if (flag !== 0x30 && flag !== 0) throw new FormatError('TOC_MALFORMED', `${TOC_TAR_NAME} is not a regular file`, ctx);
  const size = tarNumber(hdr.subarray(124, 136), ctx);
  if (size > limits.maxTocBytes) {
    throw new FormatError('TOC_TOO_LARGE', `TOC of ${size} bytes exceeds the limit of ${limits.maxTocBytes}`, ctx);
  }
  const all = await decodePrefix('gzip', member, 512 + size, ctx);
  return Buffer.from(all.subarray(512, 512 + size));
}

/** Decode the zstd-compressed TOC frame to exactly `size` bytes (unverified). */
export async function extractTocFromZstdFrame(frame: Buffer, size: number, ctx: ErrorContext): Promise<Buffer> {
  return Buffer.from(await decodePrefix('zstd', frame, size, ctx));
}
