import { describe, expect, it } from 'vitest';
import { decodeBase64Strict } from '../../src/core/base64.js';
import { parseRfc3339 } from '../../src/formats/rfc3339.js';

describe('decodeBase64Strict (the one base64 check)', () => {
  it('decodes padded standard base64, canonical or not (Go StdEncoding decodes both)', () => {
    expect(decodeBase64Strict('aGVsbG8=')?.toString()).toBe('hello');
    expect(decodeBase64Strict('')?.length).toBe(0);
    expect(decodeBase64Strict('aGVsbG9=')?.toString()).toBe('hello'); // non-zero trailing bits
    expect(decodeBase64Strict('+/+/')).toEqual(Buffer.from([0xfb, 0xff, 0xbf]));
  });

  it('rejects what Buffer.from would silently skip or guess', () => {
    for (const bad of ['aGVsbG8', 'aGVs bG8=', 'aGVsbG8=\n', '-_-_', 'aGVsbG8==', 'a===', '=aGV', 'aGVsbG8=aGVs', 'é']) {
      expect(decodeBase64Strict(bad), JSON.stringify(bad)).toBeUndefined();
    }
  });
});

describe('parseRfc3339 (the one RFC 3339 parser, Go time.Parse rules)', () => {
  it('reads seconds, nanoseconds and offsets exactly', () => {
    expect(parseRfc3339('2023-11-14T22:13:20Z')).toEqual({ sec: 1_700_000_000, nsec: 0 });
    expect(parseRfc3339('2023-11-14T23:13:20.5+01:00')).toEqual({ sec: 1_700_000_000, nsec: 500_000_000 });
    expect(parseRfc3339('2023-11-14t22:13:20.123456789z')).toEqual({ sec: 1_700_000_000, nsec: 123_456_789 });
    // More than nine fraction digits: Go truncates to the nanosecond.
    expect(parseRfc3339('2023-11-14T22:13:20.1234567899Z')).toEqual({ sec: 1_700_000_000, nsec: 123_456_789 });
    // Years 0–99 are those years (Date.UTC would make them 19xx); before the epoch is negative.
    expect(parseRfc3339('0050-01-01T00:00:00Z')).toEqual({ sec: -60_589_296_000, nsec: 0 });
    expect(parseRfc3339('1969-12-31T23:59:59Z')).toEqual({ sec: -1, nsec: 0 });
    expect(parseRfc3339('2024-02-29T00:00:00-00:30')).toEqual({ sec: 1_709_166_600, nsec: 0 });
  });

  it('rejects impossible dates and other spellings', () => {
    for (const bad of ['2023-02-29T00:00:00Z', '2023-11-14T24:00:00Z', '2023-11-14T22:13:60Z', '2023-11-14 22:13:20Z', '2023-11-14T22:13:20', '2023-11-14T22:13:20+0100', '2023-11-14T22:13:20.Z', '2023-11-14T22:13:20+24:00']) {
      expect(parseRfc3339(bad), bad).toBeUndefined();
    }
  });
});
