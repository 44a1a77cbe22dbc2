import { codedError, type ErrorContext } from '../core/errors.js';

/**
 * Errors raised by the filesystem side itself. The code is the errno name the kernel should see
 * (ENOENT, EROFS, …) or FUSE_TIMEOUT; errno.ts maps every LazyAlsError code to a number.
 */
export type FuseErrorCode =
  | 'ENOENT'
  | 'EROFS'
  | 'EIO'
  | 'ENOTDIR'
  | 'EISDIR'
  | 'EINVAL'
  | 'EBADF'
  | 'EACCES' // a caller the access policy does not allow to resolve layers
  | 'FUSE_TIMEOUT' // a handler did not answer within its configured time
  | 'FUSE_MOUNT'; // mount/unmount failed

declare module '../core/errors.js' {
  interface ErrorCodes extends Record<FuseErrorCode, true> {}
}

export class FuseError extends codedError<FuseErrorCode>() {}

export const enoent = (what: string, context: ErrorContext = {}): FuseError => new FuseError('ENOENT', `no such entry: ${what}`, context);
export const erofs = (what: string): FuseError => new FuseError('EROFS', `read-only filesystem: ${what}`);
