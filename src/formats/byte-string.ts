/**
 * Names are bytes. A Linux file name is any bytes but "/" and NUL, so the layer model carries names,
 * paths and link targets as `ByteString`s: JS strings whose every char code is one byte (0–255),
 * i.e. Node's 'latin1' (binary) mapping of the bytes. That mapping is lossless for any byte sequence
 * (non-UTF-8 included), compares in byte order with plain `<`/`===`, and V8 stores such strings
 * one byte per char.
 *
 * Every conversion between bytes and text happens here, at the edges:
 *   tar header / PAX / tar-split raw bytes → byteStringOf(buf)
 *   TOC JSON text (already UTF-8-decoded by JSON.parse) → byteStringFromText(s)
 *   to the kernel / Node fs (which accepts Buffer paths) → toBuffer(b)
 *   to a UTF-8-only consumer (fuse-native, logs, JSON output) → toText(b) (lossy for non-UTF-8)
 */
import type { ByteString } from './model.js';

export type { ByteString } from './model.js';

/** Raw name bytes → ByteString. */
export function byteStringOf(bytes: Uint8Array): ByteString {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1') as ByteString;
}

/** Text (a JS string, e.g. from TOC JSON) → the ByteString of its UTF-8 encoding. */
export function byteStringFromText(text: string): ByteString {
  // Pure ASCII is already its own byte string: skip the two copies on the hot path.
  // eslint-disable-next-line no-control-regex
  if (/^[\x00-\x7f]*$/.test(text)) return text as ByteString;
  return Buffer.from(text, 'utf8').toString('latin1') as ByteString;
}

/** The bytes of a ByteString (for fs calls: Node accepts Buffer paths). */
export function toBuffer(b: ByteString): Buffer {
  return Buffer.from(b, 'latin1');
}

/** UTF-8 decoding of the bytes: exact for UTF-8 names, U+FFFD for invalid sequences (lossy). */
export function toText(b: ByteString): string {
  // eslint-disable-next-line no-control-regex
  if (/^[\x00-\x7f]*$/.test(b)) return b;
  return Buffer.from(b, 'latin1').toString('utf8');
}

/** Is every byte valid UTF-8 (so toText is lossless)? */
export function isUtf8(b: ByteString): boolean {
  // eslint-disable-next-line no-control-regex
  if (/^[\x00-\x7f]*$/.test(b)) return true;
  return Buffer.from(toText(b), 'utf8').toString('latin1') === b;
}

/** Checked cast: a string whose char codes are all ≤ 0xff (throws otherwise). */
export function asByteString(s: string): ByteString {
  // eslint-disable-next-line no-control-regex
  if (!/^[\x00-\xff]*$/.test(s)) throw new TypeError(`not a byte string: ${JSON.stringify(s.slice(0, 80))}`);
  return s as ByteString;
}

/** A printable, unambiguous rendering for messages and logs (non-printable / non-ASCII bytes as \xNN). */
export function displayName(b: ByteString, max = 300): string {
  const s = b.length > max ? b.slice(0, max) : b;
  // eslint-disable-next-line no-control-regex
  return /^[\x20-\x7e]*$/.test(s) ? s : s.replace(/[^\x20-\x7e]|\\/g, (c) => (c === '\\' ? '\\\\' : '\\x' + c.charCodeAt(0).toString(16).padStart(2, '0')));
}

/**
 * What Go's encoding/json does to a string holding these bytes: every byte that does not start a
 * valid UTF-8 sequence becomes U+FFFD (one per byte), valid sequences pass through. A TOC written by
 * Go (containers/storage, stargz-snapshotter) therefore holds goJsonMangle(name) where the tar holds
 * the name's real bytes; comparing through this function tells a mangled name from a different one.
 */
export function goJsonMangle(b: ByteString): ByteString {
  // eslint-disable-next-line no-control-regex
  if (/^[\x00-\x7f]*$/.test(b)) return b;
  const bytes = toBuffer(b);
  const out: number[] = [];
  let i = 0;
  while (i < bytes.length) {
    const n = utf8SeqLen(bytes, i);
    if (n === 0) {
      out.push(0xef, 0xbf, 0xbd);
      i++;
    } else {
      for (let k = 0; k < n; k++) out.push(bytes[i + k]!);
      i += n;
    }
  }
  return byteStringOf(Uint8Array.from(out));
}

/** Length of the valid UTF-8 sequence starting at i (Go's utf8.DecodeRune rules), 0 if invalid. */
function utf8SeqLen(b: Uint8Array, i: number): number {
  const c = b[i]!;
  if (c < 0x80) return 1;
  const cont = (k: number, lo = 0x80, hi = 0xbf): boolean => i + k < b.length && b[i + k]! >= lo && b[i + k]! <= hi;
  if (c >= 0xc2 && c <= 0xdf) return cont(1) ? 2 : 0;
  if (c === 0xe0) return cont(1, 0xa0) && cont(2) ? 3 : 0;
  if (c === 0xed) return cont(1, 0x80, 0x9f) && cont(2) ? 3 : 0; // no surrogates
  if (c >= 0xe1 && c <= 0xef) return cont(1) && cont(2) ? 3 : 0;
  if (c === 0xf0) return cont(1, 0x90) && cont(2) && cont(3) ? 4 : 0;
  if (c >= 0xf1 && c <= 0xf3) return cont(1) && cont(2) && cont(3) ? 4 : 0;
  if (c === 0xf4) return cont(1, 0x80, 0x8f) && cont(2) && cont(3) ? 4 : 0;
  return 0;
}
