/**
 * Base error of lazy-als. Every error carries a stable `code` and the context needed to act on
 * it (which blob, entry, chunk, byte range, source). Each folder of src/ defines its own subclasses
 * in its own errors.ts; the FUSE layer maps codes to errno in exactly one table.
 */

/** The codes of core's own errors (below). */
type CoreErrorCode =
  | 'INVALID_ARGUMENT' // a caller-supplied value (digest string, option, reference) is malformed
  | 'ABORTED' // the operation was aborted through its AbortSignal
  | 'DIGEST_MISMATCH' // bytes did not hash to the digest they were expected to have
  | 'BLOB_RANGE'; // a read outside a blob's bounds

/**
 * Every error code of lazy-als, as the keys of one interface. Each folder's errors.ts adds its own
 * codes by declaration merging (`declare module '../core/errors.js' { interface ErrorCodes extends
 * Record<FormatErrorCode, true> {} }`), so a folder owns its codes while `ErrorCode` is the one
 * union: the base constructor accepts nothing else, and the errno table (fuse/errno.ts) is a
 * `Record<ErrorCode, …>` the compiler checks for completeness.
 */
export interface ErrorCodes extends Record<CoreErrorCode, true> {}
export type ErrorCode = keyof ErrorCodes;
export interface ErrorContext {
  /** Blob digest (compressed layer digest) or a file path for local blobs. */
  blob?: string;
  /** Layer key or reference the error belongs to. */
  layer?: string;
  /** Entry (file path inside the layer) involved. */
  entry?: string;
  /** Chunk digest involved. */
  chunk?: string;
  /** Byte range [start, end) in the blob involved. */
  range?: readonly [number, number];
  /** Source (registry host/repository, or dfs root) involved. */
  source?: string;
}

export class LazyAlsError extends Error {
  readonly code: ErrorCode;
  readonly context: ErrorContext;

  constructor(code: ErrorCode, message: string, context: ErrorContext = {}, options?: { cause?: unknown }) {
    super(message + formatContext(context), options);
    this.name = new.target.name;
    this.code = code;
    this.context = context;
  }
}

/** LazyAlsError's constructor, narrowed to the codes `C`. */
export type CodedErrorClass<C extends ErrorCode> = new (
  code: C,
  message: string,
  context?: ErrorContext,
  options?: { cause?: unknown },
) => LazyAlsError & { readonly code: C };

/**
 * The base of a folder's error class: LazyAlsError accepting (and typed as carrying) only the codes
 * `C`, so the class is one line: `export class FormatError extends codedError<FormatErrorCode>() {}`.
 */
export function codedError<C extends ErrorCode>(): CodedErrorClass<C> {
  // sound: the instance's code is the constructor's argument, which the signature narrows to C
  return LazyAlsError as unknown as CodedErrorClass<C>;
}

function formatContext(c: ErrorContext): string {
  const parts: string[] = [];
  if (c.layer !== undefined) parts.push(`layer ${c.layer}`);
  if (c.blob !== undefined) parts.push(`blob ${c.blob}`);
  if (c.entry !== undefined) parts.push(`entry ${JSON.stringify(c.entry)}`);
  if (c.chunk !== undefined) parts.push(`chunk ${c.chunk}`);
  if (c.range !== undefined) parts.push(`range ${c.range[0]}-${c.range[1]}`);
  if (c.source !== undefined) parts.push(`source ${c.source}`);
  return parts.length ? ` (${parts.join(', ')})` : '';
}

/** Bytes did not hash to the digest they were expected to have. Nothing derived from them may be used. */
export class DigestMismatchError extends LazyAlsError {
  readonly expected: string;
  readonly actual: string;
  constructor(what: string, expected: string, actual: string, context: ErrorContext = {}) {
    super('DIGEST_MISMATCH', `${what}: digest mismatch: expected ${expected}, got ${actual}`, context);
    this.expected = expected;
    this.actual = actual;
  }
}

/** A caller-supplied value (digest string, option, reference) is malformed. */
export class InvalidArgumentError extends LazyAlsError {
  constructor(message: string, context: ErrorContext = {}) {
    super('INVALID_ARGUMENT', message, context);
  }
}

/** The operation was aborted through its AbortSignal. */
export class AbortedError extends LazyAlsError {
  constructor(context: ErrorContext = {}) {
    super('ABORTED', 'operation aborted', context);
  }
}

export function isLazyAlsError(e: unknown): e is LazyAlsError {
  return e instanceof LazyAlsError;
}
