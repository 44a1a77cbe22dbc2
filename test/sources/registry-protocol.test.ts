import { describe, expect, it } from 'vitest';
import { backoffDelay, withRetry, DEFAULT_RETRY } from '../../src/sources/registry/backoff.js';
import { boundaryOf, parseMultipartByteranges } from '../../src/sources/registry/multipart.js';
import { parseContentRange, planRanges, rangeHeader } from '../../src/sources/registry/range-plan.js';
import { RangeFill } from '../../src/sources/registry/range-fill.js';
import { parseWwwAuthenticate } from '../../src/sources/registry/www-authenticate.js';
import { SourceError } from '../../src/sources/errors.js';

describe('WWW-Authenticate', () => {
  it('parses quoted commas, escapes, several challenges and bare tokens', () => {
    const c = parseWwwAuthenticate('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:samalba/my-app:pull,push", Basic realm="a \\"b\\", c"');
    expect(c).toEqual([
      { scheme: 'bearer', params: { realm: 'https://auth.docker.io/token', service: 'registry.docker.io', scope: 'repository:samalba/my-app:pull,push' } },
      { scheme: 'basic', params: { realm: 'a "b", c' } },
    ]);
    expect(parseWwwAuthenticate(['BASIC realm=plain', 'bearer error=insufficient_scope'])).toEqual([
      { scheme: 'basic', params: { realm: 'plain' } },
      { scheme: 'bearer', params: { error: 'insufficient_scope' } },
    ]);
    expect(parseWwwAuthenticate(undefined)).toEqual([]);
    expect(parseWwwAuthenticate('"garbage')).toEqual([]);
  });
});

describe('range planning', () => {
  it('sorts, merges overlaps and small gaps, and slices back in request order', () => {
    const p = planRanges([{ offset: 100, length: 10 }, { offset: 0, length: 10 }, { offset: 15, length: 5 }, { offset: 5, length: 2 }, { offset: 50, length: 0 }], 5);
    expect(p.merged).toEqual([{ offset: 0, length: 20 }, { offset: 100, length: 10 }]);
    expect(p.slices).toEqual([{ merged: 1, start: 0, length: 10 }, { merged: 0, start: 0, length: 10 }, { merged: 0, start: 15, length: 5 }, { merged: 0, start: 5, length: 2 }, { merged: -1, start: 0, length: 0 }]);
    expect(rangeHeader(p.merged)).toBe('bytes=0-19,100-109');
    expect(planRanges([{ offset: 0, length: 10 }, { offset: 15, length: 5 }], 0).merged).toHaveLength(2);
  });
  it('parses Content-Range strictly', () => {
    expect(parseContentRange('bytes 0-9/100')).toEqual({ first: 0, last: 9, total: 100 });
    expect(parseContentRange('bytes 5-5/*')).toEqual({ first: 5, last: 5, total: undefined });
    for (const bad of ['bytes 9-0/100', 'bytes 0-100/100', 'items 0-1/2', 'bytes */100', undefined]) expect(parseContentRange(bad)).toBeUndefined();
  });
  it('RangeFill detects uncovered bytes', () => {
    const f = new RangeFill([{ offset: 10, length: 10 }, { offset: 30, length: 5 }]);
    f.put(0, Buffer.alloc(25, 1));
    expect(f.firstGap()).toBe(1);
    f.put(30, Buffer.from([1, 2, 3, 4, 5, 6]));
    expect(f.firstGap()).toBe(-1);
    expect(f.buffers[1]).toEqual(Buffer.from([1, 2, 3, 4, 5]));
  });
});

describe('multipart/byteranges', () => {
  const part = (b: string, range: string, data: string, eol = '\r\n'): string => `--${b}${eol}Content-Type: application/octet-stream${eol}Content-Range: bytes ${range}${eol}${eol}${data}${eol}`;
  it('uses each part’s Content-Range, even for payloads containing the boundary', () => {
    const b = 'XyZ';
    const body = Buffer.from(part(b, '100-109/1000', '--XyZ\r\n456') + part(b, '0-3/1000', 'abcd') + `--${b}--\r\n`);
    const parts = parseMultipartByteranges(body, b);
    expect(Array.isArray(parts)).toBe(true);
    expect((parts as Array<{ range: { first: number }; data: Buffer }>).map((p) => [p.range.first, p.data.toString()])).toEqual([[100, '--XyZ\r\n456'], [0, 'abcd']]);
  });
  it('is lenient: unquoted boundary with ":" (CloudFront), LF line ends, preamble, missing close', () => {
    expect(boundaryOf('multipart/byteranges; boundary=CloudFront:ABC123')).toBe('CloudFront:ABC123');
    expect(boundaryOf('multipart/byteranges; boundary="q b"')).toBe('q b');
    expect(boundaryOf('application/octet-stream')).toBeUndefined();
    const body = Buffer.from('preamble\n' + part('CloudFront:ABC123', '0-1/10', 'hi', '\n'));
    const parts = parseMultipartByteranges(body, 'CloudFront:ABC123');
    expect((parts as Array<{ data: Buffer }>)[0]!.data.toString()).toBe('hi');
  });
  it('reports malformed bodies', () => {
    expect(typeof parseMultipartByteranges(Buffer.from('nothing'), 'b')).toBe('string');
    expect(parseMultipartByteranges(Buffer.from('--b\r\nContent-Type: x\r\n\r\ndata\r\n--b--'), 'b')).toMatch(/without Content-Range/);
    expect(parseMultipartByteranges(Buffer.from('--b\r\nContent-Range: bytes 0-99/100\r\n\r\nshort'), 'b')).toMatch(/truncated/);
  });
});

describe('backoff', () => {
  it('full jitter under an exponential, capped ceiling; retries only retryable errors', async () => {
    const p = { ...DEFAULT_RETRY, baseDelayMs: 100, maxDelayMs: 1000, random: () => 0.999, retries: 3, sleep: async () => undefined };
    expect([0, 1, 2, 3, 4, 10].map((a) => backoffDelay(p, a))).toEqual([99, 199, 399, 799, 999, 999]);
    let n = 0;
    await expect(withRetry(p, async () => {
      n++;
      throw new SourceError('REGISTRY_HTTP', 'x', { status: 503 }, { retryable: true });
    })).rejects.toMatchObject({ status: 503 });
    expect(n).toBe(4);
    n = 0;
    await expect(withRetry(p, async () => {
      n++;
      throw new SourceError('REGISTRY_AUTH', 'no');
    })).rejects.toMatchObject({ code: 'REGISTRY_AUTH' });
    expect(n).toBe(1);
  });
});
