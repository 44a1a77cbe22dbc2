/**
 * `multipart/byteranges` bodies (RFC 9110 §14.6), parsed from a buffered body. Each part's own
 * Content-Range says what it holds: servers may coalesce, reorder or drop ranges, so we never assume
 * part i answers requested range i. A part's payload is taken by its Content-Range length, not by
 * searching for the next boundary (payload bytes may contain the boundary string).
 * Lenient where real servers are sloppy: unquoted boundaries with ':' (CloudFront), LF-only line
 * ends, a missing final "--".
 */
import { parseContentRange, type ContentRange } from './range-plan.js';

export interface BytePart {
  readonly range: ContentRange;
  readonly data: Buffer;
}

export function boundaryOf(contentType: string | undefined): string | undefined {
  if (contentType === undefined) return undefined;
  const [type, ...params] = contentType.split(';');
  if (type?.trim().toLowerCase() !== 'multipart/byteranges') return undefined;
  for (const p of params) {
    const eq = p.indexOf('=');
    if (eq < 0) continue;
    if (p.slice(0, eq).trim().toLowerCase() !== 'boundary') continue;
    let v = p.slice(eq + 1).trim();
    if (v.startsWith('"') && v.endsWith('"') && v.length >= 2) v = v.slice(1, -1);
    return v.length > 0 ? v : undefined;
  }
  return undefined;
}

/** Returns the parts, or a string saying what is wrong. */
export function parseMultipartByteranges(body: Buffer, boundary: string): BytePart[] | string {
  const delim = Buffer.from('--' + boundary, 'latin1');
  const parts: BytePart[] = [];
  let pos = body.indexOf(delim, 0);
  if (pos < 0) return 'no boundary delimiter in body';
  for (;;) {
    pos += delim.length;
    if (body[pos] === 0x2d && body[pos + 1] === 0x2d) return parts; // "--": close delimiter
    // transport padding then line end
    while (body[pos] === 0x20 || body[pos] === 0x09) pos++;
    if (body[pos] === 0x0d) pos++;
    if (body[pos] !== 0x0a) return `malformed delimiter line at ${pos}`;
    pos++;
    // headers up to an empty line
    let range: ContentRange | undefined;
    for (;;) {
      const nl = body.indexOf(0x0a, pos);
      if (nl < 0) return 'unterminated part headers';
      let line = body.toString('latin1', pos, nl);
      pos = nl + 1;
      if (line.endsWith('\r')) line = line.slice(0, -1);
      if (line === '') break;
      const colon = line.indexOf(':');
      if (colon > 0 && line.slice(0, colon).trim().toLowerCase() === 'content-range') {
        range = parseContentRange(line.slice(colon + 1));
        if (!range) return `bad part Content-Range ${JSON.stringify(line)}`;
      }
    }
    if (!range) return 'part without Content-Range';
    const len = range.last - range.first + 1;
    if (pos + len > body.length) return `part ${range.first}-${range.last} truncated`;
    parts.push({ range, data: body.subarray(pos, pos + len) });
    pos += len;
    const next = body.indexOf(delim, pos);
    if (next < 0) return parts; // missing close delimiter: tolerate
    pos = next;
  }
}
