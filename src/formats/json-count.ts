/**
 * Entry-count bound for a TOC *before* it is parsed: parsing builds one JS object per entry (and
 * per xattrs map), which costs far more than the JSON text, so a TOC with millions of tiny entries
 * must be refused from its bytes. This counts the objects ('{' outside strings) in one pass over the
 * buffer, allocating nothing; a TOC entry is at most two objects (itself and its xattrs).
 */
import type { ErrorContext } from '../core/errors.js';
import { FormatError } from './errors.js';

/** Number of JSON objects in `json`, counting stops once it passes `stopAfter`. */
export function countJsonObjects(json: Uint8Array, stopAfter = Number.MAX_SAFE_INTEGER): number {
  let n = 0;
  let inString = false;
  for (let i = 0; i < json.length; i++) {
    const c = json[i]!;
    if (inString) {
      if (c === 0x5c) i++; // backslash: skip the escaped char
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x7b && ++n > stopAfter) return n;
  }
  return n;
}

/** Throw TOC_TOO_LARGE when the TOC cannot hold ≤ maxEntries entries (checked before parsing). */
export function checkTocObjectCount(json: Uint8Array, maxEntries: number, ctx: ErrorContext): void {
  // root object + entries + one xattrs object per entry (+ slack for any other small objects)
  const max = 1 + 2 * maxEntries + 16;
  if (countJsonObjects(json, max) > max) {
    throw new FormatError('TOC_TOO_LARGE', `TOC holds more than ${maxEntries} entries (limits.max_entries), refused before parsing`, ctx);
  }
}
