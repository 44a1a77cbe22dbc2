/**
 * Record payloads stored gzip-compressed (params.payloadGzip = 1): an eStargz TOC or a plain layer's
 * entry list is ~0.3 KiB of JSON per entry, a 100k-entry layer's record would be ~50 MB of base64
 * text, built and held as one string while the layer is opened. Compressed, it is a few MB. Records
 * without the param (written before) hold the bytes as they are. The bytes are inflated with a cap
 * (a record file is just bytes on disk) and verified by the loader as before.
 */
import { gunzipSync, gzipSync } from 'node:zlib';
import { decodeBase64Strict } from '../core/base64.js';
import type { ErrorContext } from '../core/errors.js';
import { FormatError } from './errors.js';
import type { LayerRecord } from './layer-reader.js';

/** params key: the payload is base64 of gzip of the bytes. */
export const PAYLOAD_GZIP = 'payloadGzip';

export function encodePayload(bytes: Uint8Array): string {
  return gzipSync(bytes, { level: 1 }).toString('base64');
}

/** The payload bytes of `record` (inflated when it says so), at most `max` bytes; undefined when it is not base64 (or gzip) within that. */
export function decodePayload(record: LayerRecord, max: number, ctx: ErrorContext): Buffer | undefined {
  if (typeof record.payload !== 'string') return undefined;
  const gz = record.params?.[PAYLOAD_GZIP] === 1;
  if (!gz) return record.payload.length <= Math.ceil(max / 3) * 4 ? decodeBase64Strict(record.payload) : undefined;
  const packed = decodeBase64Strict(record.payload);
  if (packed === undefined) return undefined;
  try {
    return gunzipSync(packed, { maxOutputLength: max });
  } catch (e) {
    throw new FormatError('TOC_MALFORMED', `record payload does not inflate within ${max} bytes: ${(e as Error).message}`, ctx, { cause: e });
  }
}
