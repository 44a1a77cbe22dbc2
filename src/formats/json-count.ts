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

/** Where the elements of one array sit in the JSON bytes: [start, end) byte pairs, and the array's own span. */
export interface ArraySplit {
  /** Offset of the '[' and one past the ']'. */
  readonly arrayStart: number;
  readonly arrayEnd: number;
  /** start0, end0, start1, end1, … of each element (every element an object). */
  readonly elements: Uint32Array;
}

const isWs = (c: number): boolean => c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;

/**
 * Find the array under the top-level key `key` of the JSON object in `json` and the byte range of
 * each of its elements, in one pass that allocates nothing per element, so each element can be
 * parsed on its own (a 100k-entry TOC parsed whole is ~100 MB of JS objects at once; parsed one entry
 * at a time, one entry). Returns undefined whenever the text is not plainly of that shape (the key
 * missing, written with escapes or twice, an element that is not an object, stray bytes): the caller
 * then parses the whole text, which gives the exact answer or the exact error.
 */
export function splitTopLevelArray(json: Uint8Array, key: string): ArraySplit | undefined {
  const want = Buffer.from(JSON.stringify(key), 'latin1');
  let depth = 0;
  let inString = false;
  let expectKey = false;
  let keyStart = -1;
  let matched = false; // the last key at depth 1 was `key`: its value comes next
  let inArray = false;
  let found: { start: number; end: number } | undefined;
  let elements = new Uint32Array(1024);
  let count = 0;
  let elemStart = -1;
  // Inside the array: what may come next. Go's encoding/json refuses `[{}{}]`, `[,{}]`, `[{},]`.
  let arr: 'first' | 'comma' | 'elem' = 'first';
  for (let i = 0; i < json.length; i++) {
    const c = json[i]!;
    if (inString) {
      if (c === 0x5c) i++;
      else if (c === 0x22) {
        inString = false;
        if (keyStart >= 0) {
          const len = i + 1 - keyStart;
          if (len === want.length && Buffer.compare(want, json.subarray(keyStart, i + 1)) === 0) {
            if (found) return undefined; // twice
            matched = true;
          }
          keyStart = -1;
        }
      }
      continue;
    }
    if (c === 0x22) {
      inString = true;
      if (depth === 1 && expectKey) {
        keyStart = i;
        expectKey = false;
      } else if (inArray && depth === 2) return undefined; // a string element
      continue;
    }
    if (c === 0x7b || c === 0x5b) {
      if (depth === 1 && matched) {
        if (c !== 0x5b) return undefined;
        inArray = true;
        arr = 'first';
        found = { start: i, end: -1 };
      } else if (inArray && depth === 2) {
        if (c !== 0x7b || arr === 'elem') return undefined;
        elemStart = i;
      }
      depth++;
      if (depth === 1) expectKey = true;
      continue;
    }
    if (c === 0x7d || c === 0x5d) {
      depth--;
      if (depth < 0) return undefined;
      if (inArray && depth === 2 && elemStart >= 0) {
        if (2 * count + 2 > elements.length) {
          const grown = new Uint32Array(elements.length * 2);
          grown.set(elements);
          elements = grown;
        }
        elements[2 * count] = elemStart;
        elements[2 * count + 1] = i + 1;
        count++;
        elemStart = -1;
        arr = 'elem';
      } else if (inArray && depth === 1) {
        if (c !== 0x5d || arr === 'comma') return undefined; // `[{},]`, or `}` closing the array
        inArray = false;
        matched = false;
        found!.end = i + 1;
      }
      continue;
    }
    if (inArray && depth === 2 && c === 0x2c) {
      if (arr !== 'elem') return undefined; // `[,{}]`, `[{},,{}]`
      arr = 'comma';
      continue;
    }
    if (c === 0x2c && depth === 1) {
      expectKey = true;
      matched = false;
      continue;
    }
    if (inArray && depth === 2 && c !== 0x2c && !isWs(c)) return undefined; // a number, true, … as an element
    if (depth === 1 && matched && c !== 0x3a && !isWs(c)) return undefined; // a non-array value
  }
  if (!found || found.end < 0 || depth !== 0 || inString) return undefined;
  return { arrayStart: found.start, arrayEnd: found.end, elements: elements.subarray(0, 2 * count) };
}
