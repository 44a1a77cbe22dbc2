import { constants } from 'node:os';
import { describe, expect, it } from 'vitest';
import { DigestMismatchError, InvalidArgumentError } from '../../src/core/errors.js';
import { CacheError } from '../../src/cache/errors.js';
import { IndexError } from '../../src/catalog/errors.js';
import { FormatError } from '../../src/formats/errors.js';
import { ERRNO_BY_CODE, errnoOf, isExpectedFsAnswer } from '../../src/fuse/errno.js';
import { FuseError } from '../../src/fuse/errors.js';
import { SourceError } from '../../src/sources/errors.js';

const E = constants.errno;

// The table's completeness is the compiler's job (Record<ErrorCode, number>); this holds what each answer is.
describe('errno table', () => {
  it('names nothing (ENOENT) for what podman should pull itself, EIO for every integrity failure', () => {
    expect(errnoOf(new SourceError('BLOB_NOT_FOUND', 'x'))).toBe(E.ENOENT);
    expect(errnoOf(new InvalidArgumentError('not a digest'))).toBe(E.ENOENT);
    expect(errnoOf(new FormatError('CHUNK_DIGEST_MISMATCH', 'x'))).toBe(E.EIO);
    expect(errnoOf(new DigestMismatchError('blob', 'sha256:a', 'sha256:b'))).toBe(E.EIO);
    expect(errnoOf(new IndexError('LAYER_QUARANTINED', 'x'))).toBe(E.EIO);
    expect(errnoOf(new CacheError('CACHE_NO_SPACE', 'x'))).toBe(E.EIO);
    expect(errnoOf(new FuseError('FUSE_TIMEOUT', 'x'))).toBe(E.ETIMEDOUT);
    expect(errnoOf(new FuseError('EROFS', 'x'))).toBe(E.EROFS);
  });

  it('passes node system errors through and makes anything else EIO', () => {
    expect(errnoOf(Object.assign(new Error('gone'), { code: 'ENOENT' }))).toBe(E.ENOENT);
    expect(errnoOf(Object.assign(new Error('odd'), { code: 'NOT_AN_ERRNO' }))).toBe(E.EIO);
    expect(errnoOf(new Error('plain'))).toBe(E.EIO);
    expect(errnoOf('a string')).toBe(E.EIO);
  });

  it('every mapped value is a positive errno', () => {
    const known = new Set(Object.values(E));
    for (const [code, n] of Object.entries(ERRNO_BY_CODE)) expect(known.has(n), code).toBe(true);
  });

  it('logs every failure except ordinary answers and an EIO the fuse layer already logged', () => {
    expect(isExpectedFsAnswer(new FuseError('ENOENT', 'x'))).toBe(true);
    expect(isExpectedFsAnswer(new FuseError('EIO', 'x'))).toBe(true);
    expect(isExpectedFsAnswer(new FormatError('CHUNK_DIGEST_MISMATCH', 'x'))).toBe(false);
    expect(isExpectedFsAnswer(new Error('plain'))).toBe(false);
  });
});
