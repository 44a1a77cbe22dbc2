/**
 * A layer's index as one flat, immutable table: what the overlay view (overlay-view.ts) builds, what
 * the JS side reads through small accessors (`TableLayerIndex`, `TableNode`), and the very buffer the
 * native backend hands to its C threads (no second copy, no per-entry objects kept). Layout
 * (little-endian), mirrored and checked by native/src/table.h:
 *
 *   header  8 × u32: magic "LATB", version 1, nodes, dirents, xattrs, chunks, string bytes, 0
 *   nodes   88 bytes each; node i is the node with ino i + 1 (node 0 = root)
 *           u32 mode (S_IFMT | perm), uid, gid, nlink; u64 size; i64 mtime sec; u32 mtime nsec,
 *           rdev major, rdev minor, parent, name off/len (first name), link off/len,
 *           child first/count, xattr first/count, chunk first/count
 *   chunks  56 bytes each: u64 file offset, u64 size, 32-byte sha256, u32 flags (1 = served by JS
 *           only: a hole, or not sha256), u32 JS detail (1 = hole, 2 = digest not sha256)
 *   dirents 12 bytes each: u32 name off, name len, node; each directory's run sorted by name bytes
 *   xattrs  16 bytes each: u32 name off/len (UTF-8), value off/len
 *   strings raw bytes (names and link targets as their bytes: the model's byte strings)
 *
 * Beside the buffer, JS keeps what only its miss path needs: each chunk's compressed span (3 × f64),
 * one flag byte per node (whole-file digest = its only chunk's), and the rare digests that do not fit
 * the table (non-sha256 chunks, whole-file digests of multi-chunk files). Per entry that is about
 * 88 + 12 + 56 + 24 bytes + the name: no JS object per entry, nothing for the GC to walk.
 */
import type { Digest } from '../core/digest.js';
import { type ByteString, type ChunkRef, type LayerIndex, type LayerNode, type NodeType, S_IF } from './model.js';

export const TABLE_MAGIC = 0x4254414c;
export const TABLE_VERSION = 1;
export const TABLE_HEADER = 32;
export const NODE_BYTES = 88;
export const CHUNK_BYTES = 56;
export const DIRENT_BYTES = 12;
export const XATTR_BYTES = 16;
/** u32 words per record. */
const NW = NODE_BYTES / 4;
const CW = CHUNK_BYTES / 4;
const DW = DIRENT_BYTES / 4;
const XW = XATTR_BYTES / 4;

/** C flag: the chunk is never a cache object C may open (served by JS). */
export const CHUNK_JS_ONLY = 1;
/** JS detail word: a zstd:chunked hole. */
export const CHUNK_ZEROS = 1;
/** JS detail word: the digest is not sha256 (kept in `TableExtras.chunkDigests`). */
export const CHUNK_OTHER_DIGEST = 2;
/** Node flag: the whole-file digest equals its only chunk's digest. */
export const NODE_DIGEST_IS_CHUNK = 1;

const TYPE_OF = new Map<number, NodeType>(Object.entries(S_IF).map(([t, m]) => [m, t as NodeType]));

/** Node field offsets in u32 words. */
export const N = {
  mode: 0, uid: 1, gid: 2, nlink: 3, size: 4, mtimeSec: 6, mtimeNsec: 8, rdevMajor: 9, rdevMinor: 10,
  parent: 11, nameOff: 12, nameLen: 13, linkOff: 14, linkLen: 15, childFirst: 16, childCount: 17,
  xattrFirst: 18, xattrCount: 19, chunkFirst: 20, chunkCount: 21,
} as const;

/** What JS keeps beside the table. */
export interface TableExtras {
  /** Per chunk: span offset, span end, inner offset. */
  readonly spans: Float64Array;
  /** Per node: NODE_DIGEST_IS_CHUNK. */
  readonly nodeFlags: Uint8Array;
  /** Whole-file digests that are not their only chunk's (by node index). */
  readonly fileDigests: ReadonlyMap<number, Digest>;
  /** Chunk digests that are not sha256 (by chunk index). */
  readonly chunkDigests: ReadonlyMap<number, Digest>;
}

/** The index's own facts and the id lists the table builder gathered (declared once, on LayerIndex). */
export type TableMeta = Pick<
  LayerIndex,
  'format' | 'compression' | 'blobSize' | 'blobDigest' | 'tocDigest' | 'diffId' | 'uncompressedSize' | 'prefetchEnd' | 'uids' | 'gids'
>;

const u64 = (w: Uint32Array, i: number): number => w[i]! + w[i + 1]! * 0x1_0000_0000;
const i64 = (w: Uint32Array, i: number): number => w[i]! + (w[i + 1]! | 0) * 0x1_0000_0000;

/** Byte order compare of a byte string with `len` bytes at `off` of `b`. */
function compareBytes(s: string, b: Uint8Array, off: number, len: number): number {
  const n = Math.min(s.length, len);
  for (let i = 0; i < n; i++) {
    const d = s.charCodeAt(i) - b[off + i]!;
    if (d !== 0) return d;
  }
  return s.length - len;
}

/** The layer's facts (TableMeta) are the index's own fields: the constructor copies them in. */
export interface TableLayerIndex extends TableMeta {}

/** The LayerIndex over a table: every node, name and chunk is read from the buffer when asked for. */
// biome-ignore lint/suspicious/noUnsafeDeclarationMerging: every TableMeta field is set by Object.assign in the constructor
export class TableLayerIndex implements LayerIndex {
  /** The table (the native backend publishes this very buffer). */
  readonly table: Buffer;
  readonly extras: TableExtras;
  readonly nodeCount: number;
  /** u32 words of the node, chunk, dirent and xattr sections; the string bytes. */
  readonly #nodes: Uint32Array;
  readonly #chunks: Uint32Array;
  readonly #dirents: Uint32Array;
  readonly #xattrs: Uint32Array;
  readonly #strings: Buffer;

  constructor(table: Buffer, extras: TableExtras, meta: TableMeta) {
    if (table.byteOffset % 8 !== 0) throw new Error('layer table is not 8-byte aligned');
    const h = new Uint32Array(table.buffer, table.byteOffset, 8);
    if (h[0] !== TABLE_MAGIC || h[1] !== TABLE_VERSION) throw new Error('bad layer table magic or version');
    const [n, nd, nx, nc, ns] = [h[2]!, h[3]!, h[4]!, h[5]!, h[6]!];
    let off = table.byteOffset + TABLE_HEADER;
    const words = (count: number, per: number): Uint32Array => {
      const a = new Uint32Array(table.buffer, off, count * per);
      off += count * per * 4;
      return a;
    };
    this.#nodes = words(n, NW);
    this.#chunks = words(nc, CW);
    this.#dirents = words(nd, DW);
    this.#xattrs = words(nx, XW);
    this.#strings = Buffer.from(table.buffer, off, ns);
    if (off + ns !== table.byteOffset + table.length) throw new Error('layer table length does not match its header');
    this.table = table;
    this.extras = extras;
    this.nodeCount = n;
    Object.assign(this, meta);
  }

  get root(): LayerNode {
    return new TableNode(this, 0);
  }

  /** The node with inode number `ino` (1-based). */
  node(ino: number): LayerNode {
    if (!Number.isInteger(ino) || ino < 1 || ino > this.nodeCount) throw new RangeError(`no node ${ino} in this layer`);
    return new TableNode(this, ino - 1);
  }

  *allNodes(): Iterable<LayerNode> {
    for (let i = 0; i < this.nodeCount; i++) yield new TableNode(this, i);
  }

  lookup(path: ByteString): LayerNode | undefined {
    let cur = 0;
    if (path === '') return new TableNode(this, 0);
    let start = 0;
    while (start <= path.length) {
      let end = path.indexOf('/', start);
      if (end < 0) end = path.length;
      const next = this.#child(cur, path, start, end);
      if (next < 0) return undefined;
      cur = next;
      start = end + 1;
    }
    return new TableNode(this, cur);
  }

  /** Node index of the child of `dir` named path[start, end), or -1 (binary search of its sorted run). */
  #child(dir: number, path: string, start: number, end: number): number {
    const w = this.#nodes;
    const b = dir * NW;
    if ((w[b + N.mode]! & 0o170000) !== S_IF.dir) return -1;
    const name = start === 0 && end === path.length ? path : path.slice(start, end);
    let lo = w[b + N.childFirst]!;
    let hi = lo + w[b + N.childCount]! - 1;
    const d = this.#dirents;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const c = compareBytes(name, this.#strings, d[mid * DW]!, d[mid * DW + 1]!);
      if (c === 0) return d[mid * DW + 2]!;
      if (c < 0) hi = mid - 1;
      else lo = mid + 1;
    }
    return -1;
  }

  readdir(dir: LayerNode): readonly [ByteString, LayerNode][] {
    const i = dir.ino - 1;
    const w = this.#nodes;
    const first = w[i * NW + N.childFirst]!;
    const count = w[i * NW + N.childCount]!;
    const out: [ByteString, LayerNode][] = new Array(count);
    for (let k = 0; k < count; k++) out[k] = [this.#direntName(first + k), new TableNode(this, this.#dirents[(first + k) * DW + 2]!)];
    return out;
  }

  *walk(): Iterable<[ByteString, LayerNode]> {
    const stack: [ByteString, number][] = [['' as ByteString, 0]];
    const w = this.#nodes;
    while (stack.length) {
      const [p, i] = stack.pop()!;
      yield [p, new TableNode(this, i)];
      if ((w[i * NW + N.mode]! & 0o170000) !== S_IF.dir) continue;
      const first = w[i * NW + N.childFirst]!;
      for (let k = first + w[i * NW + N.childCount]! - 1; k >= first; k--) {
        const name = this.#direntName(k);
        stack.push([(p === '' ? name : `${p}/${name}`) as ByteString, this.#dirents[k * DW + 2]!]);
      }
    }
  }

  #direntName(k: number): ByteString {
    const off = this.#dirents[k * DW]!;
    return this.#strings.toString('latin1', off, off + this.#dirents[k * DW + 1]!) as ByteString;
  }

  /** @internal accessors for TableNode */
  nodeWord(i: number, field: number): number {
    return this.#nodes[i * NW + field]!;
  }
  nodeU64(i: number, field: number): number {
    return u64(this.#nodes, i * NW + field);
  }
  nodeI64(i: number, field: number): number {
    return i64(this.#nodes, i * NW + field);
  }
  string(off: number, len: number): ByteString {
    return this.#strings.toString('latin1', off, off + len) as ByteString;
  }
  xattrsOf(i: number): ReadonlyMap<string, Buffer> {
    const first = this.#nodes[i * NW + N.xattrFirst]!;
    const count = this.#nodes[i * NW + N.xattrCount]!;
    if (count === 0) return NO_XATTRS;
    const m = new Map<string, Buffer>();
    for (let k = first; k < first + count; k++) {
      const x = k * XW;
      const [no, nl, vo, vl] = [this.#xattrs[x]!, this.#xattrs[x + 1]!, this.#xattrs[x + 2]!, this.#xattrs[x + 3]!];
      m.set(this.#strings.toString('utf8', no, no + nl), this.#strings.subarray(vo, vo + vl));
    }
    return m;
  }
  chunk(k: number): ChunkRef {
    const c = this.#chunks;
    const x = k * CW;
    const detail = c[x + 13]!;
    const digest =
      detail === CHUNK_OTHER_DIGEST
        ? this.extras.chunkDigests.get(k)!
        : chunkSha256(this.table, this.#chunks.byteOffset + x * 4 + 16 - this.table.byteOffset);
    const s = this.extras.spans;
    const ref: { -readonly [K in keyof ChunkRef]: ChunkRef[K] } = {
      digest,
      fileOffset: u64(c, x),
      size: u64(c, x + 2),
      span: { offset: s[k * 3]!, end: s[k * 3 + 1]!, innerOffset: s[k * 3 + 2]! },
    };
    if (detail === CHUNK_ZEROS) ref.zeros = true;
    return ref;
  }
}

function chunkSha256(table: Buffer, at: number): Digest {
  return ('sha256:' + table.toString('hex', at, at + 32)) as Digest;
}

const NO_XATTRS: ReadonlyMap<string, Buffer> = new Map();

/**
 * A node of a TableLayerIndex: a small view (index + node number), made when asked for and dropped
 * after. Two views of one node are different objects: key per-node state by `ino`, not by view.
 */
class TableNode implements LayerNode {
  readonly #t: TableLayerIndex;
  readonly #i: number;
  #chunks?: readonly ChunkRef[];
  constructor(t: TableLayerIndex, i: number) {
    this.#t = t;
    this.#i = i;
  }
  get ino(): number {
    return this.#i + 1;
  }
  get type(): NodeType {
    return TYPE_OF.get(this.#t.nodeWord(this.#i, N.mode) & 0o170000)!;
  }
  get mode(): number {
    return this.#t.nodeWord(this.#i, N.mode) & 0o7777;
  }
  get uid(): number {
    return this.#t.nodeWord(this.#i, N.uid);
  }
  get gid(): number {
    return this.#t.nodeWord(this.#i, N.gid);
  }
  get nlink(): number {
    return this.#t.nodeWord(this.#i, N.nlink);
  }
  get size(): number {
    return this.#t.nodeU64(this.#i, N.size);
  }
  get mtimeSec(): number {
    return this.#t.nodeI64(this.#i, N.mtimeSec);
  }
  get mtimeNsec(): number {
    return this.#t.nodeWord(this.#i, N.mtimeNsec);
  }
  get rdevMajor(): number {
    return this.#t.nodeWord(this.#i, N.rdevMajor);
  }
  get rdevMinor(): number {
    return this.#t.nodeWord(this.#i, N.rdevMinor);
  }
  get linkTarget(): ByteString | undefined {
    if ((this.#t.nodeWord(this.#i, N.mode) & 0o170000) !== S_IF.symlink) return undefined;
    return this.#t.string(this.#t.nodeWord(this.#i, N.linkOff), this.#t.nodeWord(this.#i, N.linkLen));
  }
  get xattrs(): ReadonlyMap<string, Buffer> {
    return this.#t.xattrsOf(this.#i);
  }
  get digest(): Digest | undefined {
    if (this.#t.extras.nodeFlags[this.#i]! & NODE_DIGEST_IS_CHUNK) return this.chunks[0]!.digest;
    return this.#t.extras.fileDigests.get(this.#i);
  }
  /** Content chunks (materialised once per view). */
  get chunks(): readonly ChunkRef[] {
    if (this.#chunks === undefined) {
      const first = this.#t.nodeWord(this.#i, N.chunkFirst);
      const count = this.#t.nodeWord(this.#i, N.chunkCount);
      const out: ChunkRef[] = new Array(count);
      for (let k = 0; k < count; k++) out[k] = this.#t.chunk(first + k);
      this.#chunks = out;
    }
    return this.#chunks;
  }
}
