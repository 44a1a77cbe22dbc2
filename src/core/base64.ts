/**
 * The one strict base64 check: standard alphabet, padded, nothing else (no whitespace, no URL-safe
 * characters, no missing padding) — what Go's base64.StdEncoding (JSON []byte, TOC xattrs, tar-split,
 * auth.json) and podman's ALS path elements produce. Buffer.from(s, 'base64') alone skips anything it
 * does not understand, so text is checked here before it is trusted as bytes.
 */
const BASE64_RE = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** The bytes `s` encodes, or undefined when `s` is not padded standard base64. */
export function decodeBase64Strict(s: string): Buffer | undefined {
  // Fast path (tar-split carries a base64 tar header per entry): text that is exactly the canonical
  // encoding of its decoding matches BASE64_RE; only other text needs the (slower) regex.
  const b = Buffer.from(s, 'base64');
  if (s.length % 4 === 0 && b.toString('base64') === s) return b;
  if (!BASE64_RE.test(s)) return undefined;
  return b;
}

