import { codedError, type ErrorContext } from '../core/errors.js';

/**
 * What the local cache (object store, metadata store) can report. None of these make a read fail
 * by themselves: callers serve verified bytes from memory and log the cache failure.
 */
export type CacheErrorCode =
  | 'CACHE_NO_SPACE' // ENOSPC / EDQUOT while writing: the partial temp file was removed, nothing cached
  | 'CACHE_IO' // any other filesystem error while reading or writing the state directory
  | 'METADATA_INVALID'; // a persisted index/ref/layer file is unreadable or inconsistent with its digests

declare module '../core/errors.js' {
  interface ErrorCodes extends Record<CacheErrorCode, true> {}
}

export class CacheError extends codedError<CacheErrorCode>() {}

/** errno codes that mean "the filesystem is full" (disk or quota). */
function isNoSpace(e: unknown): boolean {
  const code = (e as { code?: unknown } | null)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT';
}

/** Wrap a filesystem error into a CacheError (ENOSPC/EDQUOT → CACHE_NO_SPACE). */
export function toCacheError(e: unknown, what: string, context: ErrorContext = {}): CacheError {
  if (e instanceof CacheError) return e;
  const msg = `${what}: ${(e as Error)?.message ?? String(e)}`;
  return new CacheError(isNoSpace(e) ? 'CACHE_NO_SPACE' : 'CACHE_IO', msg, context, { cause: e });
}
