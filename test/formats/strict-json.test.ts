import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { JsonNumber, JsonObject, JsonSyntaxError, parseStrictJson, type JsonValue } from '../../src/formats/zstd-chunked/strict-json.js';

/** The strict tree as JSON.parse would build it (numbers as doubles, the last duplicate key wins). */
function plain(v: JsonValue): unknown {
  if (v instanceof JsonNumber) return Number(v.text);
  if (v instanceof JsonObject) {
    const o: Record<string, unknown> = {};
    for (const [k, x] of v.entries) Object.defineProperty(o, k, { value: plain(x), enumerable: true, configurable: true, writable: true });
    return o;
  }
  if (Array.isArray(v)) return v.map(plain);
  return v;
}

describe('parseStrictJson', () => {
  it('reads every document JSON.parse reads, to the same values', () => {
    fc.assert(
      fc.property(fc.jsonValue(), fc.boolean(), (value, pretty) => {
        const text = JSON.stringify(value, null, pretty ? 2 : undefined);
        expect(plain(parseStrictJson(text))).toEqual(JSON.parse(text));
      }),
      { numRuns: 500 },
    );
  });

  it('keeps duplicate keys in document order and numbers as their literal text', () => {
    const v = parseStrictJson('{"a":1,"A":2,"a":18446744073709551617}') as JsonObject;
    expect(v.entries.map(([k, n]) => [k, (n as JsonNumber).text])).toEqual([
      ['a', '1'],
      ['A', '2'],
      ['a', '18446744073709551617'],
    ]);
  });

  it('decodes escapes and surrogate pairs', () => {
    expect(parseStrictJson(String.raw`"a\"b\\c\/\b\f\n\r\t\u00e9\ud83d\ude00"`)).toBe('a"b\\c/\b\f\n\r\té😀');
  });

  it.each([
    ['', 'unexpected end of input', 0],
    ['{"a" 1}', 'expected ":"', 5],
    ['{"a":1 "b":2}', 'expected "," or "}"', 7],
    ['[1 2]', 'expected "," or "]"', 3],
    ['{1:2}', 'expected object key', 1],
    ['"abc', 'unterminated string', 1],
    ['"a\\x"', 'bad escape', 2],
    ['"a\\u12g4"', 'bad \\u escape', 2],
    ['"a\u0001"', 'control character in string', 2],
    ['[1] x', 'unexpected data after the top-level value', 4],
    ['01', 'unexpected data after the top-level value', 1],
    ['+1', 'unexpected character', 0],
    ['['.repeat(70) + ']'.repeat(70), 'nesting too deep', 65],
  ])('refuses %j: %s at offset %i', (text, message, position) => {
    let err: unknown;
    try {
      parseStrictJson(text);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(JsonSyntaxError);
    expect((err as JsonSyntaxError).message).toBe(`${message} at offset ${position}`);
    expect((err as JsonSyntaxError).position).toBe(position);
  });
});
