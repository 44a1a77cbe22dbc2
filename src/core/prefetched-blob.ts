/**
 * A RandomAccessBlob with some ranges fetched up front, in one readRanges call: a read that falls
 * inside one of them is answered from memory (a copy), any other goes to the underlying blob. If
 * the up-front fetch fails, every read goes to the blob (and meets the error itself, if any).
 * Bytes stay unverified, exactly as the underlying blob's.
 */
import { checkRange, readRanges, type ByteRange, type RandomAccessBlob } from './blob.js';

export class PrefetchedBlob implements RandomAccessBlob {
  readonly size: number;
  readonly #blob: RandomAccessBlob;
  readonly #ranges: readonly ByteRange[];
  readonly #data: Promise<Buffer[] | undefined>;

  constructor(blob: RandomAccessBlob, ranges: readonly ByteRange[], signal?: AbortSignal) {
    this.#blob = blob;
    this.size = blob.size;
    this.#ranges = ranges;
    for (const r of ranges) checkRange(blob, r.offset, r.length);
    this.#data = ranges.length === 0 ? Promise.resolve(undefined) : readRanges(blob, ranges, signal).catch(() => undefined);
  }

  get name(): string {
    return this.#blob.name;
  }

  async read(offset: number, length: number, signal?: AbortSignal): Promise<Buffer> {
    return (await this.#fromMemory(offset, length)) ?? this.#blob.read(offset, length, signal);
  }

  async readMany(ranges: readonly ByteRange[], signal?: AbortSignal): Promise<Buffer[]> {
    const hits = await Promise.all(ranges.map((r) => this.#fromMemory(r.offset, r.length)));
    const missing = ranges.filter((_, i) => hits[i] === undefined);
    const got = missing.length > 0 ? await readRanges(this.#blob, missing, signal) : [];
    let k = 0;
    return hits.map((h) => h ?? got[k++]!);
  }

  async #fromMemory(offset: number, length: number): Promise<Buffer | undefined> {
    const i = this.#ranges.findIndex((r) => offset >= r.offset && offset + length <= r.offset + r.length);
    if (i < 0) return undefined;
    const data = await this.#data;
    const r = this.#ranges[i]!;
    // a copy: a caller that transforms its buffer in place must not change what the next one reads
    return data && Buffer.from(data[i]!.subarray(offset - r.offset, offset - r.offset + length));
  }
}
