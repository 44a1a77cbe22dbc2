/**
 * One 512-byte tar header block → its fields (docs/formats.md §1.2). Strict: the checksum must match
 * (unsigned sum, or the signed sum some historical writers used), the magic must be POSIX ustar
 * ("ustar\0" + "00") or GNU ("ustar " + " \0"), numeric fields must be octal (NUL/space terminated,
 * leading spaces tolerated) or GNU base-256. Anything else is TAR_INVALID, because a header we
 * half-understand is a header two readers may disagree about. Names are bytes (any encoding), as
 * Go's archive/tar and the kernel take them.
 */
import { byteStringOf } from '../byte-string.js';
import { FormatError } from '../errors.js';
import type { ByteString } from '../model.js';

export const BLOCK = 512;

export interface TarHeader {
  /** Name as in the header (ustar prefix joined; GNU headers have no prefix field). */
  readonly name: ByteString;
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  readonly size: number;
  readonly mtime: number;
  /** The raw typeflag character ('\0' kept as is). */
  readonly typeflag: string;
  readonly linkName: ByteString;
  readonly devMajor: number;
  readonly devMinor: number;
  readonly gnu: boolean;
}

export function isZeroBlock(b: Uint8Array): boolean {
  for (let i = 0; i < BLOCK; i++) if (b[i] !== 0) return false;
  return true;
}

/** Bytes of a NUL-terminated field (up to the first NUL, or the whole field). */
export function fieldBytes(b: Uint8Array, off: number, len: number): Uint8Array {
  const f = b.subarray(off, off + len);
  const nul = f.indexOf(0);
  return nul < 0 ? f : f.subarray(0, nul);
}

/** Name bytes as they are: a ByteString (never decoded as text, which could change them). */
export function decodeName(bytes: Uint8Array): ByteString {
  return byteStringOf(bytes);
}

/**
 * A numeric field. Octal: optional leading spaces, octal digits, then NUL/space padding to the end
 * (an empty field is 0). GNU base-256: first byte 0x80 (positive) or 0xff (negative, only when
 * `allowNegative`, i.e. for mtime); the value must be a safe integer.
 */
function parseNumeric(b: Uint8Array, off: number, len: number, what: string, where: Where, allowNegative = false): number {
  const first = b[off]!;
  if (first & 0x80) {
    const neg = first === 0xff;
    if (first !== 0x80 && !neg) throw new FormatError('TAR_INVALID', `bad base-256 ${what}`, { entry: where() });
    if (neg && !allowNegative) throw new FormatError('TAR_INVALID', `negative ${what}`, { entry: where() });
    let v = 0n;
    for (let i = 1; i < len; i++) v = (v << 8n) | BigInt(b[off + i]!);
    if (neg) v -= 1n << BigInt(8 * (len - 1)); // two's complement over the remaining bytes
    if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < -BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new FormatError('TAR_INVALID', `${what} out of range`, { entry: where() });
    }
    return Number(v);
  }
  let i = off;
  const end = off + len;
  while (i < end && b[i] === 0x20) i++;
  let v = 0;
  let digits = 0;
  for (; i < end; i++) {
    const c = b[i]!;
    if (c < 0x30 || c > 0x37) break;
    v = v * 8 + (c - 0x30);
    digits++;
  }
  for (; i < end; i++) {
    const c = b[i]!;
    if (c !== 0 && c !== 0x20) throw new FormatError('TAR_INVALID', `bad octal ${what}`, { entry: where() });
  }
  if (digits > 17) throw new FormatError('TAR_INVALID', `${what} out of range`, { entry: where() }); // 8^17 < 2^53
  return v;
}

/** Sum of the block with the checksum field read as spaces, unsigned and signed (old tars used either). */
function checksumOk(b: Uint8Array, where: Where): boolean {
  const stored = parseNumeric(b, 148, 8, 'checksum', where);
  let unsigned = 8 * 0x20;
  let high = 0;
  for (let i = 0; i < 148; i++) {
    const c = b[i]!;
    unsigned += c;
    if (c > 127) high++;
  }
  for (let i = 156; i < BLOCK; i++) {
    const c = b[i]!;
    unsigned += c;
    if (c > 127) high++;
  }
  return stored === unsigned || stored === unsigned - 256 * high;
}

/** The header's name as printable ASCII, for error messages: built only when one is thrown. */
type Where = () => string;

const USTAR_MAGIC = Buffer.from('ustar\x0000', 'latin1');
const GNU_MAGIC = Buffer.from('ustar  \x00', 'latin1');

function magicIs(b: Uint8Array, magic: Buffer): boolean {
  for (let i = 0; i < 8; i++) if (b[257 + i] !== magic[i]) return false;
  return true;
}

/** Parse one header block at `offset` (tar offset, for messages). Throws TAR_INVALID. */
export function parseTarHeader(b: Uint8Array, offset: number): TarHeader {
  // Name for error context before the header is trusted: printable ASCII only, bounded.
  const where: Where = () => `tar header at ${offset}: ${Buffer.from(fieldBytes(b, 0, 100)).toString('latin1').replace(/[^\x20-\x7e]/g, '?') || '(no name)'}`;
  if (!checksumOk(b, where)) throw new FormatError('TAR_INVALID', 'header checksum mismatch', { entry: where() });
  let gnu: boolean;
  if (magicIs(b, USTAR_MAGIC)) gnu = false;
  else if (magicIs(b, GNU_MAGIC)) gnu = true;
  else throw new FormatError('TAR_INVALID', 'not a ustar/GNU header (bad magic)', { entry: where() });
  let name = decodeName(fieldBytes(b, 0, 100));
  if (!gnu) {
    const prefix = fieldBytes(b, 345, 155);
    if (prefix.length) name = (decodeName(prefix) + '/' + name) as ByteString;
  }
  return {
    name,
    mode: parseNumeric(b, 100, 8, 'mode', where),
    uid: parseNumeric(b, 108, 8, 'uid', where),
    gid: parseNumeric(b, 116, 8, 'gid', where),
    size: parseNumeric(b, 124, 12, 'size', where),
    mtime: parseNumeric(b, 136, 12, 'mtime', where, true),
    typeflag: String.fromCharCode(b[156]!),
    linkName: decodeName(fieldBytes(b, 157, 100)),
    devMajor: parseNumeric(b, 329, 8, 'devmajor', where),
    devMinor: parseNumeric(b, 337, 8, 'devminor', where),
    gnu,
  };
}
