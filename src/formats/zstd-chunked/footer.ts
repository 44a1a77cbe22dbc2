/**
 * Where the zstd:chunked metadata lives (docs/formats.md §4.2–§4.4, §3.2 for the old footer).
 *
 * Two independent sources can say it: the descriptor annotations (`…manifest-position`,
 * `…tarsplit-position`; what containers/storage uses) and a footer in the last skippable frame of
 * the blob. The current footer is 64 bytes with magic "GNUlInUx"; the 2020–2023 one is 40 bytes with
 * magic "GnUlInUx" (shared with stargz-snapshotter's zstd variant, so it is only believed together
 * with the old `io.containers.zstd-chunked.*` annotations). When both sources exist they must agree.
 */
import type { ErrorContext } from '../../core/errors.js';
import { FormatError } from '../errors.js';
import { STARGZ_TOC_DIGEST_ANNOTATION, ZSTD_CHUNKED_TOC_DIGEST_ANNOTATION, ZSTD_SKIPPABLE_MAGIC } from '../constants.js';

export const ANN_MANIFEST_CHECKSUM = ZSTD_CHUNKED_TOC_DIGEST_ANNOTATION;
export const ANN_MANIFEST_POSITION = 'io.github.containers.zstd-chunked.manifest-position';
export const ANN_TARSPLIT_POSITION = 'io.github.containers.zstd-chunked.tarsplit-position';
export const ANN_OLD_MANIFEST_CHECKSUM = 'io.containers.zstd-chunked.manifest-checksum';
export const ANN_OLD_MANIFEST_POSITION = 'io.containers.zstd-chunked.manifest-position';
export const ANN_ESTARGZ_TOC_DIGEST = STARGZ_TOC_DIGEST_ANNOTATION;

/** u32le 0x184D2A50: the skippable-frame magic every zstd:chunked writer uses. */
export const SKIPPABLE_MAGIC = Buffer.alloc(4);
SKIPPABLE_MAGIC.writeUInt32LE(ZSTD_SKIPPABLE_MAGIC);
const FOOTER_MAGIC = Buffer.from('GNUlInUx', 'latin1');
const OLD_FOOTER_MAGIC = Buffer.from('GnUlInUx', 'latin1');
/** Footer payload sizes; the blob ends with an 8-byte skippable header plus the payload. */
export const FOOTER_SIZE = 64;
const OLD_FOOTER_SIZE = 40;
/** The only manifest type there is ("CRFS"). */
const MANIFEST_TYPE_CRFS = 1;

export interface Position {
  readonly offset: number;
  readonly length: number;
  readonly uncompressedLength: number;
}

interface MetadataPositions {
  readonly manifest: Position;
  /** Absent when the layer has no tar-split (old layers, or a footer with zero fields). */
  readonly tarSplit?: Position;
}

export interface Footer extends MetadataPositions {
  /** Bytes the footer frame occupies at the end of the blob (8-byte header + payload). */
  readonly frameBytes: number;
}

function u64(buf: Buffer, off: number, field: string, ctx: ErrorContext): number {
  const v = buf.readBigUInt64LE(off);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new FormatError('FOOTER_INVALID', `footer ${field} ${v} is too large`, ctx);
  return Number(v);
}

/** Does `tail` (the last bytes of the blob) end with a skippable frame of `payload` bytes? */
function framedPayload(tail: Buffer, payload: number): Buffer | undefined {
  if (tail.length < payload + 8) return undefined;
  const hdr = tail.subarray(tail.length - payload - 8, tail.length - payload);
  if (!hdr.subarray(0, 4).equals(SKIPPABLE_MAGIC) || hdr.readUInt32LE(4) !== payload) return undefined;
  return tail.subarray(tail.length - payload);
}

/**
 * Parse the current 64-byte footer from the last ≥ 72 bytes of a blob. Returns undefined when the
 * blob does not end with one (magic absent, or not inside a 64-byte skippable frame: the short-lived
 * 2023 56-byte footer shared the magic, and those layers are located by their annotations); throws
 * FOOTER_INVALID when a well-framed footer has bad fields.
 */
export function parseFooter(tail: Buffer, ctx: ErrorContext): Footer | undefined {
  if (tail.length < FOOTER_MAGIC.length || !tail.subarray(tail.length - 8).equals(FOOTER_MAGIC)) return undefined;
  const p = framedPayload(tail, FOOTER_SIZE);
  if (!p) return undefined;
  const type = u64(p, 24, 'manifest type', ctx);
  if (type !== MANIFEST_TYPE_CRFS) throw new FormatError('FOOTER_INVALID', `unsupported manifest type ${type}`, ctx);
  const manifest = {
    offset: u64(p, 0, 'manifest offset', ctx),
    length: u64(p, 8, 'manifest length', ctx),
    uncompressedLength: u64(p, 16, 'manifest uncompressed length', ctx),
  };
  const ts = {
    offset: u64(p, 32, 'tar-split offset', ctx),
    length: u64(p, 40, 'tar-split length', ctx),
    uncompressedLength: u64(p, 48, 'tar-split uncompressed length', ctx),
  };
  const hasTs = ts.offset !== 0 || ts.length !== 0 || ts.uncompressedLength !== 0;
  return { manifest, ...(hasTs ? { tarSplit: ts } : {}), frameBytes: FOOTER_SIZE + 8 };
}

/** Parse the old 40-byte footer ("GnUlInUx"); undefined when absent. */
export function parseOldFooter(tail: Buffer, ctx: ErrorContext): Footer | undefined {
  if (tail.length < OLD_FOOTER_MAGIC.length || !tail.subarray(tail.length - 8).equals(OLD_FOOTER_MAGIC)) return undefined;
  const p = framedPayload(tail, OLD_FOOTER_SIZE);
  if (!p) return undefined;
  const type = u64(p, 24, 'manifest type', ctx);
  if (type !== MANIFEST_TYPE_CRFS) throw new FormatError('FOOTER_INVALID', `unsupported manifest type ${type}`, ctx);
  return {
    manifest: {
      offset: u64(p, 0, 'manifest offset', ctx),
      length: u64(p, 8, 'manifest length', ctx),
      uncompressedLength: u64(p, 16, 'manifest uncompressed length', ctx),
    },
    frameBytes: OLD_FOOTER_SIZE + 8,
  };
}

function decimalFields(value: string, count: number, what: string, ctx: ErrorContext): number[] {
  const parts = value.split(':');
  if (parts.length !== count || !parts.every((p) => /^(0|[1-9][0-9]{0,15})$/.test(p))) {
    throw new FormatError('FOOTER_INVALID', `malformed ${what} annotation ${JSON.stringify(value.slice(0, 100))}`, ctx);
  }
  const nums = parts.map(Number);
  if (!nums.every(Number.isSafeInteger)) throw new FormatError('FOOTER_INVALID', `${what} annotation value too large`, ctx);
  return nums;
}

/** `"<offset>:<length>:<uncompressedLength>:<type>"`, type must be 1. */
export function parseManifestPosition(value: string, ctx: ErrorContext): Position {
  const [offset, length, uncompressedLength, type] = decimalFields(value, 4, 'manifest-position', ctx) as [number, number, number, number];
  if (type !== MANIFEST_TYPE_CRFS) throw new FormatError('FOOTER_INVALID', `manifest-position has unsupported type ${type}`, ctx);
  return { offset, length, uncompressedLength };
}

/** `"<offset>:<length>:<uncompressedLength>"`. */
export function parseTarSplitPosition(value: string, ctx: ErrorContext): Position {
  const [offset, length, uncompressedLength] = decimalFields(value, 3, 'tarsplit-position', ctx) as [number, number, number];
  return { offset, length, uncompressedLength };
}

export function samePosition(a: Position | undefined, b: Position | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  return a.offset === b.offset && a.length === b.length && a.uncompressedLength === b.uncompressedLength;
}

export function formatPosition(p: Position): string {
  return `${p.offset}:${p.length}:${p.uncompressedLength}`;
}
