/**
 * A RandomAccessBlob that logs each read at debug level (offset, bytes, ranges, ms): the round
 * trips a layer's resolution makes, for the pull timeline (bench/e2e/pull.ts). Bytes pass through
 * untouched (still unverified).
 */
import { readRanges, type ByteRange, type RandomAccessBlob } from '../core/blob.js';
import type { Logger } from '../core/log.js';

export function loggedBlob(blob: RandomAccessBlob, logger: Logger, fields: Record<string, unknown>): RandomAccessBlob {
  const timed = async <T>(ranges: readonly ByteRange[], f: () => Promise<T>): Promise<T> => {
    const t0 = performance.now();
    const out = await f();
    const bytes = ranges.reduce((n, r) => n + r.length, 0);
    logger.debug('catalog.resolve_read', { ...fields, offset: ranges[0]?.offset, ranges: ranges.length, bytes, ms: Math.round(performance.now() - t0) });
    return out;
  };
  return {
    size: blob.size,
    get name() {
      return blob.name;
    },
    read: (offset, length, signal) => timed([{ offset, length }], () => blob.read(offset, length, signal)),
    readMany: (ranges, signal) => timed(ranges, () => readRanges(blob, ranges, signal)),
  };
}
