/**
 * A small strict JSON parser for authenticated-but-hostile documents (the zstd:chunked TOC).
 *
 * Why not JSON.parse: it silently merges duplicate keys (keeping the last value at the first
 * position), turns big integers into imprecise doubles, and leaves no way to see how the reference
 * parser (Go, keys folded case-insensitively) would have read the same bytes. Here objects keep
 * every key in document order and numbers keep their literal text, so the TOC reader can reject
 * anything ambiguous (duplicate folded keys, fractional or huge integers) instead of guessing.
 * RFC 8259 grammar; nesting is bounded; anything but whitespace after the top-level value is an error.
 */
export class JsonNumber {
  constructor(readonly text: string) {}
}

export class JsonObject {
  constructor(readonly entries: readonly (readonly [string, JsonValue])[]) {}
}

export type JsonValue = string | boolean | null | JsonNumber | JsonObject | JsonValue[];

export class JsonSyntaxError extends Error {
  constructor(message: string, readonly position: number) {
    super(`${message} at offset ${position}`);
    this.name = 'JsonSyntaxError';
  }
}

const MAX_DEPTH = 64;
const NUMBER_RE = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;
/** A string body needing the slow path: an escape or a raw control character. */
const SLOW_STRING_RE = /[\\\x00-\x1f]/;
const ESCAPES: Record<string, string> = { '"': '"', '\\': '\\', '/': '/', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t' };
const QUOTE = 0x22;

export function parseStrictJson(text: string): JsonValue {
  const parser = new StrictJsonParser(text);
  const v = parser.value(0);
  parser.skipWs();
  if (parser.i !== text.length) parser.fail('unexpected data after the top-level value');
  return v;
}

/** Recursive descent over `text`; `i` is the offset of the next unread character. */
class StrictJsonParser {
  i = 0;
  readonly #text: string;
  readonly #n: number;

  constructor(text: string) {
    this.#text = text;
    this.#n = text.length;
  }

  fail(msg: string): never {
    throw new JsonSyntaxError(msg, this.i);
  }

  skipWs(): void {
    for (;;) {
      const c = this.#text.charCodeAt(this.i);
      if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) this.i++;
      else return;
    }
  }

  value(depth: number): JsonValue {
    if (depth > MAX_DEPTH) this.fail('nesting too deep');
    this.skipWs();
    if (this.i >= this.#n) this.fail('unexpected end of input');
    const c = this.#text.charCodeAt(this.i);
    if (c === QUOTE) return this.#string();
    if (c === 0x7b /* { */) return this.#object(depth);
    if (c === 0x5b /* [ */) return this.#array(depth);
    return this.#literal();
  }

  /** At '"': the fast path slices a body without escapes or control characters. */
  #string(): string {
    const text = this.#text;
    this.i++;
    const end = text.indexOf('"', this.i);
    if (end < 0) this.fail('unterminated string');
    const body = text.slice(this.i, end);
    if (SLOW_STRING_RE.test(body)) return this.#slowString();
    this.i = end + 1;
    return body;
  }

  /** From just after the opening quote: escapes and control characters handled one by one. */
  #slowString(): string {
    const text = this.#text;
    let out = '';
    let start = this.i;
    for (;;) {
      if (this.i >= this.#n) this.fail('unterminated string');
      const c = text.charCodeAt(this.i);
      if (c === QUOTE) {
        out += text.slice(start, this.i);
        this.i++;
        return out;
      }
      if (c < 0x20) this.fail('control character in string');
      if (c !== 0x5c) {
        this.i++;
        continue;
      }
      out += text.slice(start, this.i) + this.#escape();
      start = this.i;
    }
  }

  /** At a backslash: the escaped character, `i` moved past the escape. */
  #escape(): string {
    const e = this.#text[this.i + 1];
    if (e === undefined) this.fail('unterminated escape');
    if (e === 'u') {
      const hex = this.#text.slice(this.i + 2, this.i + 6);
      if (!/^[0-9a-fA-F]{4}$/.test(hex)) this.fail('bad \\u escape');
      this.i += 6;
      return String.fromCharCode(parseInt(hex, 16));
    }
    const r = ESCAPES[e];
    if (r === undefined) this.fail('bad escape');
    this.i += 2;
    return r;
  }

  /** At '{': every key kept in document order, duplicates included (the caller decides). */
  #object(depth: number): JsonObject {
    const text = this.#text;
    this.i++;
    const entries: [string, JsonValue][] = [];
    this.skipWs();
    if (text.charCodeAt(this.i) === 0x7d) {
      this.i++;
      return new JsonObject(entries);
    }
    for (;;) {
      this.skipWs();
      if (text.charCodeAt(this.i) !== QUOTE) this.fail('expected object key');
      const k = this.#string();
      this.skipWs();
      if (text.charCodeAt(this.i) !== 0x3a /* : */) this.fail('expected ":"');
      this.i++;
      entries.push([k, this.value(depth + 1)]);
      this.skipWs();
      const d = text.charCodeAt(this.i);
      if (d === 0x2c /* , */ || d === 0x7d /* } */) this.i++;
      if (d === 0x2c) continue;
      if (d === 0x7d) return new JsonObject(entries);
      this.fail('expected "," or "}"');
    }
  }

  /** At '['. */
  #array(depth: number): JsonValue[] {
    const text = this.#text;
    this.i++;
    const arr: JsonValue[] = [];
    this.skipWs();
    if (text.charCodeAt(this.i) === 0x5d) {
      this.i++;
      return arr;
    }
    for (;;) {
      arr.push(this.value(depth + 1));
      this.skipWs();
      const d = text.charCodeAt(this.i);
      if (d === 0x2c /* , */ || d === 0x5d /* ] */) this.i++;
      if (d === 0x2c) continue;
      if (d === 0x5d) return arr;
      this.fail('expected "," or "]"');
    }
  }

  /** true, false, null or a number (kept as its literal text). */
  #literal(): JsonValue {
    const text = this.#text;
    if (text.startsWith('true', this.i)) {
      this.i += 4;
      return true;
    }
    if (text.startsWith('false', this.i)) {
      this.i += 5;
      return false;
    }
    if (text.startsWith('null', this.i)) {
      this.i += 4;
      return null;
    }
    NUMBER_RE.lastIndex = this.i;
    const m = NUMBER_RE.exec(text);
    if (!m || m[0].length === 0) this.fail('unexpected character');
    this.i += m[0].length;
    return new JsonNumber(m[0]);
  }
}
