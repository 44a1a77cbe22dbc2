/**
 * Reading HTTP bodies with hard limits: never more than a cap into memory, never fewer bytes than
 * promised. Transport failures mid-body become retryable SourceErrors.
 */
import { SourceError, type SourceErrorContext } from '../errors.js';

export type BodyStream = AsyncIterable<Uint8Array> & { dump?(opts?: { limit?: number }): Promise<void>; destroy?(err?: Error): unknown };

export function transportError(what: string, e: unknown, ctx: SourceErrorContext): SourceError {
  if (e instanceof SourceError) return e;
  const code = (e as { code?: unknown }).code;
  const msg = e instanceof Error ? e.message : String(e);
  return new SourceError('REGISTRY_TRANSPORT', `${what}: ${typeof code === 'string' ? code + ' ' : ''}${msg}`, ctx, { cause: e, retryable: true });
}

/** Read the whole body, failing with BODY_TOO_LARGE past `cap` bytes. */
export async function readCapped(body: BodyStream, cap: number, what: string, ctx: SourceErrorContext): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let n = 0;
  try {
    for await (const c of body) {
      n += c.byteLength;
      if (n > cap) {
        body.destroy?.();
        throw new SourceError('BODY_TOO_LARGE', `${what}: body larger than ${cap} bytes`, ctx);
      }
      chunks.push(Buffer.from(c.buffer, c.byteOffset, c.byteLength));
    }
  } catch (e) {
    throw transportError(what, e, ctx);
  }
  return Buffer.concat(chunks, n);
}

/**
 * A buffer for a response body in shared memory: the decode worker threads read the spans in it
 * without a copy (a SharedArrayBuffer crosses postMessage by reference).
 */
export function sharedBuffer(length: number): Buffer {
  return Buffer.from(new SharedArrayBuffer(length));
}

/**
 * Read exactly `length` bytes (a Range response) into `into` (of that length) or a new buffer
 * (shared memory, see sharedBuffer); short → retryable BODY_TRUNCATED, long → error.
 */
export async function readExact(body: BodyStream, length: number, what: string, ctx: SourceErrorContext, into?: Buffer): Promise<Buffer> {
  const out = into ?? sharedBuffer(length);
  let n = 0;
  try {
    for await (const c of body) {
      if (n + c.byteLength > length) {
        body.destroy?.();
        throw new SourceError('RANGE_RESPONSE_INVALID', `${what}: body longer than the ${length} bytes announced`, ctx);
      }
      out.set(c, n);
      n += c.byteLength;
    }
  } catch (e) {
    throw transportError(what, e, ctx);
  }
  if (n !== length) throw new SourceError('BODY_TRUNCATED', `${what}: body ended after ${n} of ${length} bytes`, ctx, { retryable: true });
  return out;
}

/** Discard a body we do not need (keeps the connection reusable when cheap). */
export async function discard(body: BodyStream): Promise<void> {
  try {
    if (body.dump) await body.dump({ limit: 64 * 1024 });
    else for await (const _ of body) void _;
  } catch {
    /* the connection is dropped; nothing to report */
  }
}
