import { constants } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { LazyAlsError, type ErrorContext } from './errors.js';

/**
 * The one seam between bytes and logic: a blob of known size that can be read at any offset.
 * Implemented by local files, registry blobs (HTTP Range) and files on a distributed filesystem.
 * `read` returns exactly `length` bytes or throws; it never returns a short buffer.
 * Bytes from a RandomAccessBlob are *unverified*: only the format readers turn them into verified
 * content (see src/formats/).
 */
export interface RandomAccessBlob {
  readonly size: number;
  /** Human-readable name for errors and logs (digest, path or URL). */
  readonly name: string;
  read(offset: number, length: number, signal?: AbortSignal): Promise<Buffer>;
  /**
   * Optional batch read. Sources that can coalesce or multi-range requests implement it; callers
   * use readRanges() below, which falls back to parallel read() calls.
   */
  readMany?(ranges: readonly ByteRange[], signal?: AbortSignal): Promise<Buffer[]>;
  /**
   * Optional: the caller, and everyone it handed them to, is done with these buffers from read or
   * readMany (views of them included), so the source may reuse their memory (see
   * core/buffer-pool.ts). Never call it while anything may still read them.
   */
  release?(bufs: readonly Buffer[]): void;
  close?(): Promise<void>;
}

export interface ByteRange {
  readonly offset: number;
  readonly length: number;
}

class BlobRangeError extends LazyAlsError {
  constructor(message: string, context: ErrorContext = {}) {
    super('BLOB_RANGE', message, context);
  }
}

/** Validate a requested range against a blob's size. */
export function checkRange(blob: Pick<RandomAccessBlob, 'size' | 'name'>, offset: number, length: number): void {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > blob.size) {
    throw new BlobRangeError(`read of ${length} bytes at ${offset} is outside the blob of ${blob.size} bytes`, {
      blob: blob.name,
      range: [offset, offset + length],
    });
  }
}

export async function readRanges(blob: RandomAccessBlob, ranges: readonly ByteRange[], signal?: AbortSignal): Promise<Buffer[]> {
  if (blob.readMany) return blob.readMany(ranges, signal);
  return Promise.all(ranges.map((r) => blob.read(r.offset, r.length, signal)));
}

/** A blob held in memory (tests, small TOCs). */
export class BufferBlob implements RandomAccessBlob {
  readonly size: number;
  readonly name: string;
  readonly #buf: Buffer;
  constructor(buf: Uint8Array, name = 'memory') {
    this.#buf = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
    this.size = buf.byteLength;
    this.name = name;
  }
  async read(offset: number, length: number): Promise<Buffer> {
    checkRange(this, offset, length);
    return Buffer.from(this.#buf.subarray(offset, offset + length));
  }
}

export interface FileOpenOptions {
  /** Follow a symlink as the last path component (default false: a symlink is refused with ELOOP). */
  readonly followSymlinks?: boolean;
}

export interface FileBlobOptions extends FileOpenOptions {
  /**
   * Reads land in SharedArrayBuffers: a worker thread can be handed (a view of) them without a copy
   * (`lazy-als extract` writes a plain tar's file content from its reads this way).
   */
  readonly sharedMemory?: boolean;
}

/**
 * Open a path for reading only if it is a regular file. The open never blocks (O_NONBLOCK: a FIFO
 * with no writer would hold a thread-pool worker forever, and after four of them every disk read
 * of the process waits) and the type is checked on the open fd (fstat), so a file swapped for a
 * FIFO between a stat and an open cannot slip through. Throws BLOB_RANGE "not a regular file".
 */
export async function openRegularFile(path: string, opts: FileOpenOptions = {}): Promise<{ fh: FileHandle; size: number }> {
  const flags = constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY | (opts.followSymlinks ? 0 : constants.O_NOFOLLOW);
  const fh = await open(path, flags);
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new BlobRangeError(`not a regular file (${fileType(st)})`, { blob: path });
    return { fh, size: st.size };
  } catch (e) {
    await fh.close();
    throw e;
  }
}

function fileType(st: { isFIFO(): boolean; isDirectory(): boolean; isSocket(): boolean; isCharacterDevice(): boolean; isBlockDevice(): boolean }): string {
  if (st.isFIFO()) return 'a FIFO';
  if (st.isDirectory()) return 'a directory';
  if (st.isSocket()) return 'a socket';
  if (st.isCharacterDevice() || st.isBlockDevice()) return 'a device';
  return 'not a file';
}

/** A blob in a local (or network-mounted) file, read with positional reads. */
export class FileBlob implements RandomAccessBlob {
  readonly size: number;
  readonly name: string;
  readonly #fh: FileHandle;
  readonly #shared: boolean;
  private constructor(fh: FileHandle, size: number, name: string, shared: boolean) {
    this.#fh = fh;
    this.size = size;
    this.name = name;
    this.#shared = shared;
  }
  /** Open a regular file (see openRegularFile: never blocks, never opens a FIFO or device). */
  static async open(path: string, opts: FileBlobOptions = {}): Promise<FileBlob> {
    const { fh, size } = await openRegularFile(path, opts);
    return new FileBlob(fh, size, path, opts.sharedMemory === true);
  }
  async read(offset: number, length: number, signal?: AbortSignal): Promise<Buffer> {
    checkRange(this, offset, length);
    const buf = this.#shared ? Buffer.from(new SharedArrayBuffer(length)) : Buffer.allocUnsafe(length);
    let done = 0;
    while (done < length) {
      signal?.throwIfAborted();
      const { bytesRead } = await this.#fh.read(buf, done, length - done, offset + done);
      if (bytesRead === 0) {
        throw new BlobRangeError(`file shrank: short read at ${offset + done}`, { blob: this.name, range: [offset, offset + length] });
      }
      done += bytesRead;
    }
    return buf;
  }
  async close(): Promise<void> {
    await this.#fh.close();
  }
}
