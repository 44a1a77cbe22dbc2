import { describe, expect, it } from 'vitest';
import { InvalidReferenceError } from '../../src/sources/errors.js';
import { parseReference, refFromBase64, refToBase64, repositoryName, withDigest } from '../../src/sources/reference.js';

const D = 'sha256:' + 'ab'.repeat(32);

describe('parseReference', () => {
  // The table from /work/shared/e2e/README.md ("The reference string"), plus the Docker rules.
  const table: Array<[string, string]> = [
    ['localhost:5000/e2e/busybox:gzip', 'localhost:5000/e2e/busybox:gzip'],
    ['busybox', 'docker.io/library/busybox:latest'],
    ['docker.io/library/busybox', 'docker.io/library/busybox:latest'],
    ['docker.io/library/busybox:e2e-gzip', 'docker.io/library/busybox:e2e-gzip'],
    [`localhost:5000/e2e/busybox@${D}`, `localhost:5000/e2e/busybox@${D}`],
    [`localhost:5000/e2e/busybox:zstd@${D}`, `localhost:5000/e2e/busybox@${D}`],
    ['docker.io/busybox', 'docker.io/library/busybox:latest'],
    ['index.docker.io/busybox:1', 'docker.io/library/busybox:1'],
    ['e2e/busybox:gzip', 'docker.io/e2e/busybox:gzip'],
    ['localhost/foo', 'localhost/foo:latest'],
    ['quay.io/org/app', 'quay.io/org/app:latest'],
    ['ghcr.io/stargz-containers/python:3.9-esgz', 'ghcr.io/stargz-containers/python:3.9-esgz'],
    ['127.0.0.1:5000/a/b/c:v1.2_3', '127.0.0.1:5000/a/b/c:v1.2_3'],
    ['Example/foo', 'Example/foo:latest'],
    ['[::1]:5000/foo', '[::1]:5000/foo:latest'],
    [`busybox@${D}`, `docker.io/library/busybox@${D}`],
    ['my-reg.local:443/a__b/c--d:t', 'my-reg.local:443/a__b/c--d:t'],
  ];
  for (const [input, want] of table) {
    it(`${input} → ${want}`, () => {
      expect(parseReference(input).string).toBe(want);
    });
  }

  it('splits domain, path, tag and digest', () => {
    const r = parseReference(`localhost:5000/e2e/busybox:zstd@${D}`);
    expect(r).toEqual({ domain: 'localhost:5000', path: 'e2e/busybox', digest: D, string: `localhost:5000/e2e/busybox@${D}` });
    const t = parseReference('busybox:1.36');
    expect(t).toMatchObject({ domain: 'docker.io', path: 'library/busybox', tag: '1.36' });
    expect(t.digest).toBeUndefined();
    expect(repositoryName(t)).toBe('docker.io/library/busybox');
    expect(withDigest(t, D as never).string).toBe(`docker.io/library/busybox@${D}`);
  });

  const bad = ['', 'UPPER', 'ns/UPPER', 'docker.io/Library/busybox', 'a//b', 'foo:', 'foo@sha256:abc', 'foo:tag with space',
    'foo/-bar', `foo@md5:${'a'.repeat(32)}`, '-x.com/foo', 'foo:' + 'x'.repeat(129), 'x.com/' + 'a'.repeat(260), 'foo/', ':tag'];
  for (const b of bad) {
    it(`rejects ${JSON.stringify(b.slice(0, 40))}`, () => {
      expect(() => parseReference(b)).toThrow(InvalidReferenceError);
    });
  }
});

describe('refToBase64 / refFromBase64', () => {
  it('matches the README example and podman docs', () => {
    expect(refToBase64('localhost:5000/e2e/busybox:gzip')).toBe('bG9jYWxob3N0OjUwMDAvZTJlL2J1c3lib3g6Z3ppcA==');
    expect(refToBase64(parseReference('ubuntu:22.04'))).toBe('ZG9ja2VyLmlvL2xpYnJhcnkvdWJ1bnR1OjIyLjA0');
    expect(refToBase64('ghcr.io/stargz-containers/python:3.9-esgz')).toBe('Z2hjci5pby9zdGFyZ3otY29udGFpbmVycy9weXRob246My45LWVzZ3o=');
  });
  it('round-trips', () => {
    for (const s of ['busybox', `quay.io/a/b@${D}`, 'localhost:5000/x:y']) {
      const r = parseReference(s);
      expect(refFromBase64(refToBase64(r))).toEqual(r);
    }
  });
  it('rejects undecodable, unpadded, URL-safe, non-reference and non-normalised elements', () => {
    const cases = [
      'bG9jYWxob3N0OjUwMDAvZTJlL2J1c3lib3g6Z3ppcA', // padding stripped
      'bG9jYWxob3N0OjUwMDAvZTJlL2J1c3lib3g6Z3ppcA=', // wrong padding
      '!!!!',
      '',
      Buffer.from('not a reference!').toString('base64'),
      Buffer.from('busybox').toString('base64'), // valid reference but not the normalised string
      Buffer.from([0xff, 0xfe, 0x41]).toString('base64'),
      'ab-_',
    ];
    for (const c of cases) expect(() => refFromBase64(c), c).toThrow(InvalidReferenceError);
  });
});
