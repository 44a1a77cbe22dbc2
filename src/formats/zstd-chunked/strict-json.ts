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
  let i = 0;
  const n = text.length;
  const fail = (msg: string): never => {
    throw new JsonSyntaxError(msg, i);
  };
  const skipWs = (): void => {
    for (;;) {
      const c = text.charCodeAt(i);
      if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) i++;
      else return;
    }
  };
  const slowString = (): string => {
    // From i, just after the opening quote: escapes and control characters handled one by one.
    let out = '';
    let start = i;
    for (;;) {
      if (i >= n) fail('unterminated string');
      const c = text.charCodeAt(i);
      if (c === QUOTE) {
        out += text.slice(start, i);
        i++;
        return out;
      }
      if (c < 0x20) fail('control character in string');
      if (c !== 0x5c) {
        i++;
        continue;
      }
      out += text.slice(start, i);
      const e = text[i + 1];
      if (e === undefined) fail('unterminated escape');
      if (e === 'u') {
        const hex = text.slice(i + 2, i + 6);
        if (!/^[0-9a-fA-F]{4}$/.test(hex)) fail('bad \\u escape');
        out += String.fromCharCode(parseInt(hex, 16));
        i += 6;
      } else {
        const r = ESCAPES[e!];
        if (r === undefined) fail('bad escape');
        out += r;
        i += 2;
      }
      start = i;
    }
  };
  const parseString = (): string => {
    // text[i] === '"'
    i++;
    const end = text.indexOf('"', i);
    if (end < 0) fail('unterminated string');
    const body = text.slice(i, end);
    if (SLOW_STRING_RE.test(body)) return slowString();
    i = end + 1;
    return body;
  };
  const parseValue = (depth: number): JsonValue => {
    if (depth > MAX_DEPTH) fail('nesting too deep');
    skipWs();
    if (i >= n) fail('unexpected end of input');
    const c = text.charCodeAt(i);
    if (c === QUOTE) return parseString();
    if (c === 0x7b /* { */) {
      i++;
      const entries: [string, JsonValue][] = [];
      skipWs();
      if (text.charCodeAt(i) === 0x7d) {
        i++;
        return new JsonObject(entries);
      }
      for (;;) {
        skipWs();
        if (text.charCodeAt(i) !== QUOTE) fail('expected object key');
        const k = parseString();
        skipWs();
        if (text.charCodeAt(i) !== 0x3a /* : */) fail('expected ":"');
        i++;
        entries.push([k, parseValue(depth + 1)]);
        skipWs();
        const d = text.charCodeAt(i);
        if (d === 0x2c /* , */) {
          i++;
          continue;
        }
        if (d === 0x7d /* } */) {
          i++;
          return new JsonObject(entries);
        }
        fail('expected "," or "}"');
      }
    }
    if (c === 0x5b /* [ */) {
      i++;
      const arr: JsonValue[] = [];
      skipWs();
      if (text.charCodeAt(i) === 0x5d) {
        i++;
        return arr;
      }
      for (;;) {
        arr.push(parseValue(depth + 1));
        skipWs();
        const d = text.charCodeAt(i);
        if (d === 0x2c) {
          i++;
          continue;
        }
        if (d === 0x5d /* ] */) {
          i++;
          return arr;
        }
        fail('expected "," or "]"');
      }
    }
    if (text.startsWith('true', i)) {
      i += 4;
      return true;
    }
    if (text.startsWith('false', i)) {
      i += 5;
      return false;
    }
    if (text.startsWith('null', i)) {
      i += 4;
      return null;
    }
    NUMBER_RE.lastIndex = i;
    const m = NUMBER_RE.exec(text);
    if (!m || m[0].length === 0) fail('unexpected character');
    i += m![0].length;
    return new JsonNumber(m![0]);
  };
  const v = parseValue(0);
  skipWs();
  if (i !== n) fail('unexpected data after the top-level value');
  return v;
}
