/**
 * The one table that turns an error into the errno the kernel sees. Everything not listed is EIO:
 * for a layer store, "I could not produce verified bytes" must look like an I/O error, never like
 * a successful short read or an empty file. Node's own system errors (err.code = 'ENOENT', …) pass
 * through as themselves.
 */
import { constants } from 'node:os';
import { LazyAlsError } from '../core/errors.js';

const E = constants.errno;

/** LazyAlsError code → errno (positive). */
export const ERRNO_BY_CODE: Readonly<Record<string, number>> = Object.freeze({
  // fuse/errors.ts
  ENOENT: E.ENOENT,
  EROFS: E.EROFS,
  EIO: E.EIO,
  ENODATA: E.ENODATA,
  ERANGE: E.ERANGE,
  ENOTDIR: E.ENOTDIR,
  EISDIR: E.EISDIR,
  EINVAL: E.EINVAL,
  EBADF: E.EBADF,
  ENOSYS: E.ENOSYS,
  EACCES: E.EACCES,
  FUSE_TIMEOUT: E.ETIMEDOUT,
  FUSE_MOUNT: E.EIO,
  // core
  INVALID_ARGUMENT: E.ENOENT, // a path element that is not a digest / reference names nothing
  ABORTED: E.EINTR,
  DIGEST_MISMATCH: E.EIO,
  BLOB_RANGE: E.EIO,
  // sources: a reference that does not parse names nothing; everything else is an I/O failure
  REFERENCE_INVALID: E.ENOENT,
  IMAGE_NOT_FOUND: E.ENOENT,
  BLOB_NOT_FOUND: E.ENOENT,
  // formats: every integrity or decoding problem is EIO (listed for documentation)
  CHUNK_DIGEST_MISMATCH: E.EIO,
  TOC_DIGEST_MISMATCH: E.EIO,
  DECOMPRESS_FAILED: E.EIO,
  DECOMPRESS_LIMIT: E.EIO,
});

const NODE_CODE = /^E[A-Z0-9]+$/;

/** errno (positive) for any thrown value. */
export function errnoOf(e: unknown): number {
  if (e instanceof LazyAlsError) return ERRNO_BY_CODE[e.code] ?? E.EIO;
  const code = (e as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && NODE_CODE.test(code)) {
    const n = (E as Record<string, number | undefined>)[code];
    if (n !== undefined) return n;
  }
  return E.EIO;
}

const QUIET = new Set(['EACCES', 'ENOENT', 'EROFS', 'ENODATA', 'ERANGE', 'ENOTDIR', 'EISDIR', 'EINVAL', 'ENOSYS', 'EIO', 'INVALID_ARGUMENT', 'REFERENCE_INVALID']);

/**
 * True when the error needs no log line from the guard: an ordinary answer (ENOENT, EROFS,
 * ENODATA…), or a FuseError('EIO') — which src/fuse raises only after logging the cause itself
 * with its full context (layer key, file path, chunk digest), so each failure is one log line.
 */
export function isExpectedFsAnswer(e: unknown): boolean {
  if (!(e instanceof LazyAlsError)) return false;
  if (e.code === 'EIO') return e.name === 'FuseError';
  return QUIET.has(e.code);
}
