import { codedError, type ErrorContext } from '../core/errors.js';

/**
 * Everything a blob source (registry, distributed filesystem, credential channel) can reject.
 * Codes are stable: the FUSE errno table and tests use them. Messages name the registry,
 * repository, digest, byte range and HTTP status involved, so a log line is enough to act on.
 */
export type SourceErrorCode =
  | 'REFERENCE_INVALID' // not a parseable image reference (or ref element not base64 of one)
  | 'REGISTRY_HTTP' // unexpected HTTP status from a registry or storage URL
  | 'REGISTRY_AUTH' // 401/403 after authenticating, or no credentials for a Basic challenge
  | 'REGISTRY_TRANSPORT' // connection refused/reset, timeout, TLS failure
  | 'REGISTRY_BLOCKED' // registries.conf blocks this reference
  | 'REGISTRY_CONFIG' // registries.conf / auth.json malformed
  | 'BODY_TRUNCATED' // fewer bytes than announced / requested
  | 'BODY_TOO_LARGE' // manifest, config or token body over its cap
  | 'RANGE_RESPONSE_INVALID' // 206 without a usable Content-Range, parts not covering the request
  | 'MANIFEST_INVALID' // not JSON, unknown media type, missing fields, schema1
  | 'IMAGE_NOT_FOUND' // no source has the reference
  | 'BLOB_NOT_FOUND' // no source has the blob
  | 'CREDENTIALS_INVALID' // malformed auth-helper payload or credential helper output
  | 'LAYOUT_INVALID'; // OCI layout on the dfs is malformed

declare module '../core/errors.js' {
  interface ErrorCodes extends Record<SourceErrorCode, true> {}
}

export interface SourceErrorContext extends ErrorContext {
  /** HTTP status that caused the error, when there was one. */
  status?: number;
  /** Repository (registry path) involved. */
  repository?: string;
}

export class SourceError extends codedError<SourceErrorCode>() {
  readonly status: number | undefined;
  readonly repository: string | undefined;
  /** Whether retrying the same request may succeed (429, 5xx, transport errors, truncation). */
  readonly retryable: boolean;
  constructor(
    code: SourceErrorCode,
    message: string,
    context: SourceErrorContext = {},
    options: { cause?: unknown; retryable?: boolean } = {},
  ) {
    const { status, repository, ...rest } = context;
    const extra: string[] = [];
    if (status !== undefined) extra.push(`HTTP ${status}`);
    if (repository !== undefined) extra.push(`repository ${repository}`);
    super(code, extra.length ? `${message} [${extra.join(', ')}]` : message, rest, { cause: options.cause });
    this.status = status;
    this.repository = repository;
    this.retryable = options.retryable ?? false;
  }
}

export class InvalidReferenceError extends SourceError {
  constructor(message: string, context: SourceErrorContext = {}) {
    super('REFERENCE_INVALID', message, context);
  }
}

export function isRetryable(e: unknown): boolean {
  return e instanceof SourceError && e.retryable;
}
