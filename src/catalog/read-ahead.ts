/**
 * Read-ahead that follows the reader. Per file (LayerNode) we remember where the last read ended;
 * a read that starts there (or at offset 0) is sequential, anything else is random.
 *
 *  sequential — the window ahead of the reader doubles on every sequential read, from `minWindow`
 *               up to `maxWindow`, and is kept filled: once less than half of it is already
 *               requested, the missing part is requested in pieces of about `pieceBytes` (one
 *               getOrFetch each, so several HTTP requests run in parallel on the pool's
 *               connections and each piece is served as soon as it is verified, in file order);
 *  random     — nothing is fetched ahead (the window collapses), so random readers pay nothing.
 *
 * Bytes requested ahead and not yet settled are bounded by `maxInFlight` (per layer); chunks already
 * in memory or in flight are never requested again (the chunk cache's single flight does the rest,
 * so no byte is fetched twice).
 */
import type { ChunkRef, LayerNode } from '../formats/model.js';

/** The defaults, each with what it bounds (ReadAheadOptions has the same fields). */
const DEFAULT_READ_AHEAD = Object.freeze({
  /** Largest window ahead of a sequential reader, bytes of file content (0 = off). */
  maxWindow: 16 * 1024 * 1024,
  /** Window after the first sequential read. */
  minWindow: 1024 * 1024,
  /** Bytes of chunks per request issued ahead. */
  pieceBytes: 2 * 1024 * 1024,
  /** Bytes requested ahead and not settled yet, at most (per layer). */
  maxInFlight: 48 * 1024 * 1024,
});

export type ReadAheadOptions = { readonly [K in keyof typeof DEFAULT_READ_AHEAD]: number };

/** A reader's position may move a little out of order (the kernel issues READs concurrently). */
const SEQUENTIAL_SLACK = 1024 * 1024;

interface FileState {
  /** File offset where the last read ended. */
  next: number;
  window: number;
  /** File offset up to which chunks were requested ahead. */
  requested: number;
}

/** Files whose read position is remembered per layer (readers of more files at once get no read-ahead for the oldest). */
const MAX_FILES = 4096;

export class ReadAhead {
  readonly #o: ReadAheadOptions;
  /** Per file (by inode number: nodes are views read from the index table), most recent last; bounded. */
  readonly #files = new Map<number, FileState>();
  #inFlight = 0;

  constructor(o: Partial<ReadAheadOptions> = {}) {
    this.#o = { ...DEFAULT_READ_AHEAD, ...o };
  }

  get inFlightBytes(): number {
    return this.#inFlight;
  }

  /**
   * Note a read of [offset, end) of `node` and return the pieces (lists of chunks, in file order) to
   * request ahead now; `skip(c)` says a chunk needs no request (hole, in memory, or in flight).
   * The caller must call settle(bytes) when each piece's request ends.
   */
  plan(node: LayerNode & { readonly chunks: readonly ChunkRef[] }, offset: number, end: number, skip: (c: ChunkRef) => boolean): ChunkRef[][] {
    const o = this.#o;
    if (o.maxWindow <= 0) return [];
    let st = this.#files.get(node.ino);
    if (st) {
      this.#files.delete(node.ino); // most recently used last
      this.#files.set(node.ino, st);
    }
    const sequential = st ? offset >= st.next - SEQUENTIAL_SLACK && offset <= st.next + SEQUENTIAL_SLACK : offset === 0;
    if (!sequential) {
      if (st) {
        st.window = 0;
        st.next = end;
        st.requested = end;
      } else this.#remember(node.ino, { next: end, window: 0, requested: end });
      return [];
    }
    if (!st) {
      st = { next: end, window: o.minWindow, requested: end };
      this.#remember(node.ino, st);
    } else {
      st.next = Math.max(st.next, end);
      st.window = Math.min(o.maxWindow, Math.max(o.minWindow, st.window * 2));
    }
    const target = Math.min(node.size, st.next + st.window);
    const from = Math.max(st.requested, st.next);
    // Keep the window filled in large steps: top it up once less than half of it is requested
    // (near the end of the file the window is cut at EOF: then whatever is left goes at once).
    if (from >= target || (target - from < st.window / 2 && target < node.size)) return [];
    const pieces: ChunkRef[][] = [];
    let piece: ChunkRef[] = [];
    let pieceBytes = 0;
    let reached = from;
    const chunks = node.chunks;
    for (let i = firstChunkEndingAfter(chunks, from); i < chunks.length && chunks[i]!.fileOffset < target; i++) {
      const c = chunks[i]!;
      // over the bound: stop (but a chunk larger than the whole bound may go alone, or nothing would)
      if (this.#inFlight + pieceBytes + c.size > o.maxInFlight && this.#inFlight + pieceBytes > 0) break;
      reached = c.fileOffset + c.size;
      if (skip(c)) continue;
      piece.push(c);
      pieceBytes += c.size;
      if (pieceBytes >= o.pieceBytes) {
        pieces.push(piece);
        this.#inFlight += pieceBytes;
        piece = [];
        pieceBytes = 0;
      }
    }
    if (piece.length > 0) {
      pieces.push(piece);
      this.#inFlight += pieceBytes;
    }
    st.requested = Math.max(st.requested, reached);
    return pieces;
  }

  #remember(ino: number, st: FileState): void {
    this.#files.set(ino, st);
    if (this.#files.size > MAX_FILES) this.#files.delete(this.#files.keys().next().value!);
  }

  settle(bytes: number): void {
    this.#inFlight = Math.max(0, this.#inFlight - bytes);
  }
}

/** Index of the first chunk whose end lies after `pos` (binary search; chunks are sorted and contiguous). */
export function firstChunkEndingAfter(chunks: readonly ChunkRef[], pos: number): number {
  let lo = 0;
  let hi = chunks.length - 1;
  let first = chunks.length;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const c = chunks[mid]!;
    if (c.fileOffset + c.size > pos) {
      first = mid;
      hi = mid - 1;
    } else lo = mid + 1;
  }
  return first;
}
