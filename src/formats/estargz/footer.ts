/**
 * eStargz footers (docs/formats.md §2.2, §2.3, §3.2): the fixed-size tail that says where the TOC is.
 *
 *  - eStargz (51 bytes): an empty gzip member whose FEXTRA holds one subfield `SG`, LEN 22,
 *    `%016x` TOC offset + "STARGZ". We parse it as a gzip header and ignore the deflate/trailer bytes
 *    (another Go version may encode the empty deflate stream differently).
 *  - legacy stargz (47 bytes): same idea but XLEN 22 with no subfield header.
 *  - estargz-zstd (40 bytes): the payload of a trailing zstd skippable frame: u64le tocOffset,
 *    u64le compressed TOC length, u64le uncompressed TOC length, u64le type (1), "GnUlInUx".
 *
 * Parsers return undefined when the bytes are not that footer at all (so callers can try the next
 * candidate) and throw FOOTER_INVALID when the magic matches but a field is malformed.
 */
import { FormatError } from '../errors.js';

export const ESTARGZ_FOOTER_SIZE = 51;
export const LEGACY_FOOTER_SIZE = 47;
/** The zstd footer payload; the skippable-frame header (8 bytes) precedes it. */
export const ZSTD_FOOTER_SIZE = 40;
export const ZSTD_FOOTER_FRAME_SIZE = 48;

const FEXTRA = 0x04;
const STARGZ = Buffer.from('STARGZ');
const ZSTD_MAGIC = Buffer.from('GnUlInUx');
/** zstd skippable frame magic range 0x184D2A50..0x184D2A5F (RFC 8878 §3.1.2). */
export function isSkippableMagic(b: Buffer, at: number): boolean {
  return b.length >= at + 4 && (b.readUInt32LE(at) & 0xfffffff0) === 0x184d2a50;
}

export interface GzipFooter {
  readonly kind: 'estargz' | 'stargz-legacy';
  readonly tocOffset: number;
  readonly footerSize: number;
}

export interface ZstdFooter {
  readonly tocOffset: number;
  readonly tocCompressedSize: number;
  readonly tocSize: number;
  readonly footerSize: number;
}

function parseHexOffset(field: Buffer, blobName: string): number {
  const s = field.toString('latin1');
  if (!/^[0-9a-fA-F]{16}$/.test(s)) {
    throw new FormatError('FOOTER_INVALID', `TOC offset ${JSON.stringify(s)} is not 16 hex digits`, { blob: blobName });
  }
  const v = BigInt('0x' + s);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new FormatError('FOOTER_INVALID', `TOC offset ${s} is out of range`, { blob: blobName });
  }
  return Number(v);
}

/** Is `b` (at least 10 bytes) the start of a gzip member header with FEXTRA? */
function gzipWithExtra(b: Buffer): boolean {
  return b.length >= 12 && b[0] === 0x1f && b[1] === 0x8b && b[2] === 0x08 && ((b[3] ?? 0) & FEXTRA) !== 0;
}

/** Parse the last 51 bytes of a blob as an eStargz footer. */
export function parseEStargzFooter(tail: Buffer, blobName: string): GzipFooter | undefined {
  if (tail.length < ESTARGZ_FOOTER_SIZE) return undefined;
  const f = tail.subarray(tail.length - ESTARGZ_FOOTER_SIZE);
  if (!gzipWithExtra(f)) return undefined;
  const xlen = f.readUInt16LE(10);
  // The extra field must hold at least the SG subfield header; anything else is not this footer.
  if (xlen < 4 || f[12] !== 0x53 || f[13] !== 0x47) return undefined;
  const subLen = f.readUInt16LE(14);
  if (subLen !== 22 || xlen < 26) {
    throw new FormatError('FOOTER_INVALID', `eStargz footer subfield length ${subLen} (XLEN ${xlen}), want 22 (26)`, { blob: blobName });
  }
  if (!f.subarray(32, 38).equals(STARGZ)) {
    throw new FormatError('FOOTER_INVALID', 'eStargz footer lacks the "STARGZ" magic', { blob: blobName });
  }
  return { kind: 'estargz', tocOffset: parseHexOffset(f.subarray(16, 32), blobName), footerSize: ESTARGZ_FOOTER_SIZE };
}

/** Parse the last 47 bytes of a blob as a legacy (google/crfs) stargz footer. */
export function parseLegacyFooter(tail: Buffer, blobName: string): GzipFooter | undefined {
  if (tail.length < LEGACY_FOOTER_SIZE) return undefined;
  const f = tail.subarray(tail.length - LEGACY_FOOTER_SIZE);
  if (!gzipWithExtra(f)) return undefined;
  if (f.readUInt16LE(10) !== 22 || !f.subarray(28, 34).equals(STARGZ)) return undefined;
  return { kind: 'stargz-legacy', tocOffset: parseHexOffset(f.subarray(12, 28), blobName), footerSize: LEGACY_FOOTER_SIZE };
}

/** Parse the last 48 bytes of a blob as the estargz-zstd footer skippable frame. */
export function parseZstdFooter(tail: Buffer, blobName: string): ZstdFooter | undefined {
  if (tail.length < ZSTD_FOOTER_FRAME_SIZE) return undefined;
  const f = tail.subarray(tail.length - ZSTD_FOOTER_FRAME_SIZE);
  if (!f.subarray(40, 48).equals(ZSTD_MAGIC)) return undefined;
  const ctx = { blob: blobName };
  if (!isSkippableMagic(f, 0) || f.readUInt32LE(4) !== ZSTD_FOOTER_SIZE) {
    throw new FormatError('FOOTER_INVALID', 'estargz-zstd footer is not a 40-byte skippable frame', ctx);
  }
  const u64 = (at: number, what: string): number => {
    const v = f.readBigUInt64LE(at);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new FormatError('FOOTER_INVALID', `footer ${what} ${v} is out of range`, ctx);
    return Number(v);
  };
  const tocOffset = u64(8, 'TOC offset');
  const tocCompressedSize = u64(16, 'compressed TOC length');
  const tocSize = u64(24, 'TOC length');
  const type = f.readBigUInt64LE(32);
  if (type !== 1n) throw new FormatError('FOOTER_INVALID', `footer manifest type ${type}, want 1`, ctx);
  return { tocOffset, tocCompressedSize, tocSize, footerSize: ZSTD_FOOTER_SIZE };
}
