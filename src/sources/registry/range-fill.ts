/**
 * Copies response bytes (multipart parts, a coalesced 206, or a whole 200 body) into the buffers of
 * the ranges we asked for, and tracks coverage so a response that leaves any requested byte unfilled
 * is detected instead of returning stale or zeroed memory.
 */
import type { MergedRange } from './range-plan.js';

export class RangeFill {
  readonly #buffers: Array<Buffer | undefined>;
  readonly #targets: readonly MergedRange[];
  readonly #covered: Array<Array<[number, number]>>;
  #bytes = 0;
  readonly #want: number;

  constructor(targets: readonly MergedRange[]) {
    this.#targets = targets;
    this.#buffers = targets.map(() => undefined);
    this.#covered = targets.map(() => []);
    this.#want = targets.reduce((s, t) => s + t.length, 0);
  }

  /** One buffer per target. Bytes nothing was put at are uninitialised: check firstGap() first. */
  get buffers(): Buffer[] {
    return this.#targets.map((t, i) => (this.#buffers[i] ??= Buffer.alloc(t.length)));
  }

  /** Offset just past the last wanted byte. */
  get end(): number {
    return this.#targets.reduce((m, t) => Math.max(m, t.offset + t.length), 0);
  }

  /** Bytes `data` that sit at blob offset `at`. */
  put(at: number, data: Uint8Array): void {
    const end = at + data.byteLength;
    this.#targets.forEach((t, i) => {
      const s = Math.max(at, t.offset);
      const e = Math.min(end, t.offset + t.length);
      if (s >= e) return;
      (this.#buffers[i] ??= Buffer.allocUnsafe(t.length)).set(data.subarray(s - at, e - at), s - t.offset);
      this.#covered[i]!.push([s - t.offset, e - t.offset]);
      this.#bytes += e - s;
    });
  }

  /** Cheap check, exact when puts do not overlap (streamed bodies). */
  get probablyComplete(): boolean {
    return this.#bytes >= this.#want;
  }

  /** Index of the first target not fully covered, or -1. */
  firstGap(): number {
    for (let i = 0; i < this.#targets.length; i++) {
      const iv = this.#covered[i]!.slice().sort((a, b) => a[0] - b[0]);
      let reach = 0;
      for (const [s, e] of iv) {
        if (s > reach) break;
        reach = Math.max(reach, e);
      }
      if (reach < this.#targets[i]!.length) return i;
    }
    return -1;
  }
}
