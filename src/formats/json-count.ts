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

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const COLON = 0x3a;
const LBRACE = 0x7b;
const RBRACE = 0x7d;
const LBRACKET = 0x5b;
const RBRACKET = 0x5d;
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
  return new TopLevelArrayScan(json, key).run();
}

/** Index of the quote closing the string that opens at `start`, or -1 when the text ends first. */
function stringEnd(json: Uint8Array, start: number): number {
  for (let i = start + 1; i < json.length; i++) {
    const c = json[i]!;
    if (c === BACKSLASH) i++; // skip the escaped byte
    else if (c === QUOTE) return i;
  }
  return -1;
}

/**
 * The pass of splitTopLevelArray: strings are skipped and nesting counted here; each structural
 * byte then goes to the method that knows its place. At depth 1 (the top-level object's members)
 * that is which key the current value belongs to; at depth 2 inside the array under `key`, the
 * elements and the commas between them. Each method answers false for text not of the plain shape.
 */
class TopLevelArrayScan {
  readonly #json: Uint8Array;
  /** `key` as a JSON string, quotes included. */
  readonly #want: Buffer;
  #depth = 0;
  /** A key may come next at depth 1 (after `{` or `,`). */
  #expectKey = false;
  /** The last key at depth 1 was `key`: its value comes next. */
  #matched = false;
  /** Offset of the array's '[' and one past its ']' (-1: not seen). */
  #arrayStart = -1;
  #arrayEnd = -1;
  #inArray = false;
  /** Inside the array: what may come next. Go's encoding/json refuses `[{}{}]`, `[,{}]`, `[{},]`. */
  #next: 'first' | 'comma' | 'elem' = 'first';
  #elemStart = -1;
  #elements = new Uint32Array(1024);
  #count = 0;

  constructor(json: Uint8Array, key: string) {
    this.#json = json;
    this.#want = Buffer.from(JSON.stringify(key), 'latin1');
  }

  run(): ArraySplit | undefined {
    const json = this.#json;
    for (let i = 0; i < json.length; i++) {
      const c = json[i]!;
      let ok: boolean;
      if (c === QUOTE) {
        const end = stringEnd(json, i);
        ok = end >= 0 && this.#string(i, end);
        i = end;
      } else if (c === LBRACE || c === LBRACKET) ok = this.#open(c, i);
      else if (c === RBRACE || c === RBRACKET) ok = this.#close(c, i);
      else if (c === COMMA) ok = this.#comma();
      else ok = this.#other(c);
      if (!ok) return undefined;
    }
    if (this.#arrayEnd < 0 || this.#depth !== 0) return undefined;
    return { arrayStart: this.#arrayStart, arrayEnd: this.#arrayEnd, elements: this.#elements.subarray(0, 2 * this.#count) };
  }

  /** A string from `start` to its closing quote at `end`: a depth-1 key, or (refused) a string element. */
  #string(start: number, end: number): boolean {
    if (this.#depth === 1 && this.#expectKey) {
      this.#expectKey = false;
      const want = this.#want;
      if (end + 1 - start === want.length && Buffer.compare(want, this.#json.subarray(start, end + 1)) === 0) {
        if (this.#arrayStart >= 0) return false; // twice
        this.#matched = true;
      }
      return true;
    }
    return !(this.#inArray && this.#depth === 2);
  }

  /** `{` or `[`: the array under `key`, one of its elements, or anything nested deeper. */
  #open(c: number, i: number): boolean {
    if (this.#depth === 1 && this.#matched) {
      if (c !== LBRACKET) return false;
      this.#inArray = true;
      this.#next = 'first';
      this.#arrayStart = i;
    } else if (this.#inArray && this.#depth === 2) {
      if (c !== LBRACE || this.#next === 'elem') return false;
      this.#elemStart = i;
    }
    this.#depth++;
    if (this.#depth === 1) this.#expectKey = true;
    return true;
  }

  /** `}` or `]`: the end of an element, of the array, or of anything else. */
  #close(c: number, i: number): boolean {
    this.#depth--;
    if (this.#depth < 0) return false;
    if (this.#inArray && this.#depth === 2 && this.#elemStart >= 0) {
      this.#addElement(this.#elemStart, i + 1);
      this.#elemStart = -1;
      this.#next = 'elem';
    } else if (this.#inArray && this.#depth === 1) {
      if (c !== RBRACKET || this.#next === 'comma') return false; // `[{},]`, or `}` closing the array
      this.#inArray = false;
      this.#matched = false;
      this.#arrayEnd = i + 1;
    }
    return true;
  }

  #addElement(start: number, end: number): void {
    if (2 * this.#count + 2 > this.#elements.length) {
      const grown = new Uint32Array(this.#elements.length * 2);
      grown.set(this.#elements);
      this.#elements = grown;
    }
    this.#elements[2 * this.#count] = start;
    this.#elements[2 * this.#count + 1] = end;
    this.#count++;
  }

  #comma(): boolean {
    if (this.#inArray && this.#depth === 2) {
      if (this.#next !== 'elem') return false; // `[,{}]`, `[{},,{}]`
      this.#next = 'comma';
    } else if (this.#depth === 1) {
      this.#expectKey = true;
      this.#matched = false;
    }
    return true;
  }

  /** Any other byte outside strings: only whitespace between elements; only ':' and whitespace before the array. */
  #other(c: number): boolean {
    if (this.#inArray && this.#depth === 2 && !isWs(c)) return false; // a number, true, … as an element
    if (this.#depth === 1 && this.#matched && c !== COLON && !isWs(c)) return false; // a non-array value
    return true;
  }
}
