/**
 * Decompression with a bound: we decode only as many bytes as a chunk needs and stop, so a
 * member or frame that inflates to gigabytes (a bomb, or a lying TOC) costs at most `need` bytes.
 * gzip runs on node:zlib (libuv threadpool); zstd on zstd-napi (the only import of it), which skips
 * skippable frames and continues across concatenated frames like `zstd -d`.
 */
import { createGunzip } from 'node:zlib';
import type { Transform } from 'node:stream';
import { DecompressStream } from 'zstd-napi';
import type { ErrorContext } from '../core/errors.js';
import { FormatError } from './errors.js';
import type { Compression } from './model.js';

export function createDecompressor(compression: Exclude<Compression, 'none'>): Transform {
  if (compression === 'gzip') return createGunzip({ chunkSize: 256 * 1024 });
  return new DecompressStream() as unknown as Transform;
}

/**
 * Decode `data` (a span starting at a member/frame boundary) and return exactly its first `need`
 * uncompressed bytes. Throws DECOMPRESS_FAILED if the data is corrupt or ends before `need` bytes.
 */
export function decodePrefix(compression: Compression, data: Buffer, need: number, context: ErrorContext = {}): Promise<Buffer> {
  if (compression === 'none') {
    if (data.length < need) {
      return Promise.reject(new FormatError('DECOMPRESS_FAILED', `span has ${data.length} bytes, need ${need}`, context));
    }
    return Promise.resolve(data.subarray(0, need));
  }
  return new Promise<Buffer>((resolve, reject) => {
    const parts: Buffer[] = [];
    let have = 0;
    let settled = false;
    const d = createDecompressor(compression);
    const done = (err?: unknown): void => {
      if (settled) return;
      settled = true;
      d.removeAllListeners('data');
      d.destroy();
      if (have >= need) {
        const all = parts.length === 1 ? parts[0]! : Buffer.concat(parts, have);
        resolve(all.subarray(0, need));
      } else if (err !== undefined) {
        reject(new FormatError('DECOMPRESS_FAILED', `corrupt ${compression} data: ${(err as Error).message ?? err}`, context, { cause: err }));
      } else {
        reject(new FormatError('DECOMPRESS_FAILED', `${compression} data ends after ${have} of ${need} bytes`, context));
      }
    };
    d.on('data', (b: Buffer) => {
      if (settled) return;
      parts.push(b);
      have += b.length;
      if (have >= need) done();
    });
    d.on('error', (e) => done(e));
    d.on('end', () => done());
    d.on('close', () => done());
    if (need === 0) {
      done();
      return;
    }
    d.end(data);
  });
}
