/**
 * Which reader a blob needs, from its bytes first and its descriptor second — and refusal when the
 * two disagree. The descriptor (media type, annotations) comes from a digest-pinned manifest, the
 * bytes are what we will actually decode; a disagreement means a confused or hostile producer, and
 * guessing one side would serve a view the consumer did not ask for (FORMAT_CONFLICT).
 *
 * Order (docs/formats.md §2.5): eStargz 51-byte footer, legacy stargz 47-byte footer, external-TOC 46-byte
 * footer (not supported: FORMAT_UNKNOWN when a TOC is claimed, otherwise read as a plain tar+gzip),
 * estargz-zstd 40-byte "GnUlInUx" footer, zstd:chunked 64-byte "GNUlInUx" footer; then the head magic
 * (gzip 1f 8b, zstd frame or skippable frame) or, with neither, an uncompressed tar.
 *
 * Annotations: containers/storage never reads the zstd:chunked footer and older producers wrote the
 * 40-byte "GnUlInUx" one, so a zstd blob carrying the zstd:chunked manifest-checksum annotation and
 * either zstd footer is zstd:chunked (its reader locates the TOC from the annotations).
 */
import { FormatError } from './errors.js';
import type { LayerDescriptor } from './layer-reader.js';
import type { Compression, LayerFormat } from './model.js';
import { isZstdMagic, STARGZ_TOC_DIGEST_ANNOTATION, ZSTD_CHUNKED_TOC_DIGEST_ANNOTATION, ZSTD_SKIPPABLE_MAGIC } from './constants.js';

export const ANNOTATION_ZSTD_CHUNKED_CHECKSUM = ZSTD_CHUNKED_TOC_DIGEST_ANNOTATION;
export const ANNOTATION_STARGZ_TOC_DIGEST = STARGZ_TOC_DIGEST_ANNOTATION;

export interface DetectedFormat {
  readonly format: LayerFormat;
  readonly compression: Compression;
}

/** Bytes needed at the end (zstd:chunked footer frame) and at the start of a blob. */
export const DETECT_TAIL_BYTES = 72;
export const DETECT_HEAD_BYTES = 8;

export function compressionOfFormat(f: LayerFormat): Compression {
  switch (f) {
    case 'estargz':
    case 'stargz-legacy':
    case 'tar+gzip':
      return 'gzip';
    case 'estargz-zstd':
    case 'zstd-chunked':
    case 'tar+zstd':
      return 'zstd';
    case 'tar':
      return 'none';
  }
}

export function isTocFormat(f: LayerFormat): boolean {
  return f !== 'tar' && f !== 'tar+gzip' && f !== 'tar+zstd';
}

/** Compression named by a layer media type; undefined when there is no media type; throws for others. */
export function compressionOfMediaType(mediaType: string | undefined): Compression | undefined {
  if (mediaType === undefined || mediaType === '') return undefined;
  if (/\.tar$/.test(mediaType)) return 'none';
  if (/[.]tar[+.]gzip$/.test(mediaType)) return 'gzip';
  if (/[.]tar[+.]zstd$/.test(mediaType)) return 'zstd';
  throw new FormatError('FORMAT_UNKNOWN', `not a layer media type we read: ${JSON.stringify(mediaType.slice(0, 200))}`);
}

/** Compression from the first bytes: gzip, zstd (frame or skippable frame), else none. */
function compressionOfMagic(head: Buffer): Compression {
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) return 'gzip';
  if (head.length >= 4) {
    const m = head.readUInt32LE(0);
    if (isZstdMagic(m)) return 'zstd';
  }
  return 'none';
}

const GZIP_FEXTRA_HEAD = Buffer.from([0x1f, 0x8b, 0x08, 0x04]);

function gzipFooter(tail: Buffer): 'estargz' | 'stargz-legacy' | 'external' | undefined {
  const f51 = tail.length >= 51 ? tail.subarray(tail.length - 51) : undefined;
  if (f51?.subarray(0, 4).equals(GZIP_FEXTRA_HEAD) && f51.readUInt16LE(10) === 26 && f51[12] === 0x53 && f51[13] === 0x47 &&
    f51.readUInt16LE(14) === 22 && f51.toString('latin1', 32, 38) === 'STARGZ' && /^[0-9a-f]{16}$/.test(f51.toString('latin1', 16, 32))) {
    return 'estargz';
  }
  const f47 = tail.length >= 47 ? tail.subarray(tail.length - 47) : undefined;
  if (f47?.subarray(0, 4).equals(GZIP_FEXTRA_HEAD) && f47.readUInt16LE(10) === 22 && f47.toString('latin1', 28, 34) === 'STARGZ' &&
    /^[0-9a-f]{16}$/.test(f47.toString('latin1', 12, 28))) {
    return 'stargz-legacy';
  }
  const f46 = tail.length >= 46 ? tail.subarray(tail.length - 46) : undefined;
  if (f46?.subarray(0, 4).equals(GZIP_FEXTRA_HEAD) && f46.readUInt16LE(10) === 21 && f46.toString('latin1', 16, 33) === 'STARGZEXTERNALTOC') {
    return 'external';
  }
  return undefined;
}

function zstdFooter(tail: Buffer): 'estargz-zstd' | 'zstd-chunked' | undefined {
  const n = tail.length;
  const skippable = (at: number, len: number): boolean => at >= 0 && tail.readUInt32LE(at) === ZSTD_SKIPPABLE_MAGIC && tail.readUInt32LE(at + 4) === len;
  if (n >= 72 && tail.toString('latin1', n - 8) === 'GNUlInUx' && skippable(n - 72, 64)) return 'zstd-chunked';
  if (n >= 48 && tail.toString('latin1', n - 8) === 'GnUlInUx' && skippable(n - 48, 40)) return 'estargz-zstd';
  return undefined;
}

/**
 * Decide the format of a blob from its last ≥ 72 bytes (`tail`, or the whole blob if smaller) and
 * first ≥ 8 bytes (`head`), cross-checked with the descriptor. Throws FORMAT_CONFLICT / FORMAT_UNKNOWN.
 */
export function detectFormat(tail: Buffer, head: Buffer, descriptor?: LayerDescriptor): DetectedFormat {
  const ann = descriptor?.annotations ?? {};
  const claimsZstdChunked = ann[ANNOTATION_ZSTD_CHUNKED_CHECKSUM] !== undefined;
  const claimsStargz = ann[ANNOTATION_STARGZ_TOC_DIGEST] !== undefined;
  if (claimsZstdChunked && claimsStargz) {
    throw new FormatError('FORMAT_CONFLICT', 'descriptor carries both zstd:chunked and eStargz TOC annotations');
  }
  const byMagic = compressionOfMagic(head);
  const byMediaType = compressionOfMediaType(descriptor?.mediaType);
  if (byMediaType !== undefined && byMediaType !== byMagic) {
    throw new FormatError(
      'FORMAT_CONFLICT',
      `media type ${descriptor?.mediaType} says ${byMediaType} but the blob starts like ${byMagic === 'none' ? 'an uncompressed tar' : byMagic}`,
    );
  }
  let format: LayerFormat;
  const g = gzipFooter(tail);
  const z = g === undefined ? zstdFooter(tail) : undefined;
  if (g !== undefined && byMagic !== 'gzip') {
    throw new FormatError('FORMAT_CONFLICT', 'blob ends with a gzip (stargz) footer but does not start with gzip');
  }
  if (z !== undefined && byMagic !== 'zstd') {
    throw new FormatError('FORMAT_CONFLICT', 'blob ends with a zstd footer but does not start with zstd');
  }
  if (g === 'external') {
    if (claimsStargz || claimsZstdChunked) throw new FormatError('FORMAT_UNKNOWN', 'eStargz with an external TOC is not supported');
    format = 'tar+gzip';
  } else if (g !== undefined) format = g;
  else if (z !== undefined) format = z;
  else format = byMagic === 'gzip' ? 'tar+gzip' : byMagic === 'zstd' ? 'tar+zstd' : 'tar';

  if (claimsZstdChunked) {
    if (byMagic !== 'zstd' || g !== undefined) {
      throw new FormatError('FORMAT_CONFLICT', `zstd:chunked annotation on a blob that is ${format}`);
    }
    if (z === undefined) throw new FormatError('FORMAT_CONFLICT', 'zstd:chunked annotation on a zstd blob without a zstd:chunked footer');
    format = 'zstd-chunked';
  } else if (claimsStargz && format !== 'estargz' && format !== 'stargz-legacy' && format !== 'estargz-zstd') {
    throw new FormatError('FORMAT_CONFLICT', `eStargz toc.digest annotation on a blob that is ${format}`);
  }
  return { format, compression: compressionOfFormat(format) };
}
