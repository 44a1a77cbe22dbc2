/**
 * The one table that turns an error into the errno the kernel sees. Anything not a LazyAlsError is EIO:
 * for a layer store, "I could not produce verified bytes" must look like an I/O error, never like
 * a successful short read or an empty file. Node's own system errors (err.code = 'ENOENT', …) pass
 * through as themselves.
 */
import { constants } from 'node:os';
import { type ErrorCode, LazyAlsError } from '../core/errors.js';

const E = constants.errno;

/**
 * LazyAlsError code → errno (positive). A Record over the one ErrorCode union (core/errors.ts), so a
 * new code anywhere in src/ does not compile until it is given its errno here.
 */
export const ERRNO_BY_CODE: Readonly<Record<ErrorCode, number>> = Object.freeze({
  // fuse/errors.ts: the errno the kernel should see, by name
  ENOENT: E.ENOENT,
  EROFS: E.EROFS,
  EIO: E.EIO,
  ENOTDIR: E.ENOTDIR,
  EISDIR: E.EISDIR,
  EINVAL: E.EINVAL,
  EBADF: E.EBADF,
  EACCES: E.EACCES,
  FUSE_TIMEOUT: E.ETIMEDOUT,
  FUSE_MOUNT: E.EIO,
  // core
  INVALID_ARGUMENT: E.ENOENT, // a path element that is not a digest / reference names nothing
  ABORTED: E.EINTR,
  DIGEST_MISMATCH: E.EIO,
  BLOB_RANGE: E.EIO,
  // sources: a reference that does not parse, or an image/blob no source has, names nothing (podman
  // then pulls by itself); every other source failure is an I/O failure
  REFERENCE_INVALID: E.ENOENT,
  IMAGE_NOT_FOUND: E.ENOENT,
  BLOB_NOT_FOUND: E.ENOENT,
  REGISTRY_HTTP: E.EIO,
  REGISTRY_AUTH: E.EIO,
  REGISTRY_TRANSPORT: E.EIO,
  REGISTRY_BLOCKED: E.EIO,
  REGISTRY_CONFIG: E.EIO,
  BODY_TRUNCATED: E.EIO,
  BODY_TOO_LARGE: E.EIO,
  RANGE_RESPONSE_INVALID: E.EIO,
  MANIFEST_INVALID: E.EIO,
  CREDENTIALS_INVALID: E.EIO,
  LAYOUT_INVALID: E.EIO,
  // formats: every integrity or decoding problem is EIO — never a short or empty read
  FOOTER_INVALID: E.EIO,
  FOOTER_TRUNCATED: E.EIO,
  TOC_OUT_OF_RANGE: E.EIO,
  TOC_TOO_LARGE: E.EIO,
  TOC_DIGEST_MISMATCH: E.EIO,
  TOC_MALFORMED: E.EIO,
  TOC_MISSING: E.EIO,
  ENTRY_INVALID: E.EIO,
  ENTRY_PATH_UNSAFE: E.EIO,
  ENTRY_DUPLICATE: E.EIO,
  ENTRY_LINK_INVALID: E.EIO,
  CHUNK_INVALID: E.EIO,
  CHUNK_DIGEST_MISMATCH: E.EIO,
  DECOMPRESS_FAILED: E.EIO,
  DECOMPRESS_LIMIT: E.EIO,
  TAR_INVALID: E.EIO,
  BLOB_DIGEST_MISMATCH: E.EIO,
  DIFFID_MISMATCH: E.EIO,
  FORMAT_UNKNOWN: E.EIO,
  FORMAT_CONFLICT: E.EIO,
  // cache: the read path serves verified bytes from memory when the cache fails, so these reach a
  // reply only when nothing else could produce the bytes
  CACHE_NO_SPACE: E.EIO,
  CACHE_IO: E.EIO,
  METADATA_INVALID: E.EIO,
  // catalog: lookups turn these into ENOENT themselves; a read that meets one cannot be served
  LAYER_NOT_FOUND: E.EIO,
  LAYER_NOT_SERVABLE: E.EIO,
  SOURCE_UNAVAILABLE: E.EIO,
  BLOB_UNAVAILABLE: E.EIO,
  LAYER_QUARANTINED: E.EIO,
  // daemon: raised outside FUSE requests (config, mount, sockets); listed so the table is total
  CONFIG_INVALID: E.EIO,
  MOUNT_BUSY: E.EIO,
  STALE_MOUNT: E.EIO,
  CONTROL_SOCKET: E.EIO,
  METRICS_LISTEN: E.EIO,
} satisfies Record<ErrorCode, number>);

const NODE_CODE = /^E[A-Z0-9]+$/;

/** errno (positive) for any thrown value. */
export function errnoOf(e: unknown): number {
  if (e instanceof LazyAlsError) return ERRNO_BY_CODE[e.code];
  const code = (e as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && NODE_CODE.test(code)) {
    const n = (E as Record<string, number | undefined>)[code];
    if (n !== undefined) return n;
  }
  return E.EIO;
}

const QUIET: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  'EACCES',
  'ENOENT',
  'EROFS',
  'ENOTDIR',
  'EISDIR',
  'EINVAL',
  'EIO',
  'INVALID_ARGUMENT',
  'REFERENCE_INVALID',
]);

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
