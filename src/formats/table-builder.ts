/**
 * The overlay view's nodes while they are built, in growable typed columns (no object per entry),
 * and the packing of the finished view into one table (index-table.ts). overlay-view.ts decides
 * what the nodes are; this module only stores and packs them.
 */
import { digestAlgorithm, digestHex, type Digest } from '../core/digest.js';
import {
  CHUNK_BYTES,
  CHUNK_JS_ONLY,
  CHUNK_OTHER_DIGEST,
  CHUNK_ZEROS,
  DIRENT_BYTES,
  N,
  NODE_BYTES,
  NODE_DIGEST_IS_CHUNK,
  TableLayerIndex,
  XATTR_BYTES,
  type TableMeta,
} from './index-table.js';
import { type ByteString, type ChunkRef, type EntryStat, type NodeType, S_IF } from './model.js';
import { groupDirents, type Dirents } from './table-dirents.js';
import { type TableCounts, TableWriter } from './table-writer.js';

type Typed = Float64Array | Uint32Array | Uint8Array;

/** A typed column (of `make(n)` elements) that doubles when full. */
class Column<T extends Typed> {
  a: T;
  readonly #make: (n: number) => T;
  constructor(make: (n: number) => T, initial = 1024) {
    this.#make = make;
    this.a = make(initial);
  }
  ensure(n: number): T {
    if (n > this.a.length) {
      let len = this.a.length * 2;
      while (len < n) len *= 2;
      const b = this.#make(len);
      b.set(this.a as never);
      this.a = b;
    }
    return this.a;
  }
}

const TYPE_CODE: Readonly<Record<NodeType, number>> = S_IF;

export interface NodeAttrs extends EntryStat {
  readonly type: NodeType;
  readonly rdevMajor: number;
  readonly rdevMinor: number;
  readonly linkTarget?: ByteString;
  readonly xattrs: ReadonlyMap<string, Buffer>;
  readonly digest?: Digest;
  readonly chunks: readonly ChunkRef[];
}

/** Per node: 8 u32 words (mode|type, uid, gid, nsec, rdev major, rdev minor, chunk first, chunk count) + 2 f64 (size, mtime sec). */
const BW = 8;
/** u32 words per table record. */
const NW = NODE_BYTES / 4;
const CW = CHUNK_BYTES / 4;
const DW = DIRENT_BYTES / 4;
const XW = XATTR_BYTES / 4;

export class NodeColumns {
  count = 0;
  readonly #w = new Column((n) => new Uint32Array(n));
  readonly #f = new Column((n) => new Float64Array(n));
  readonly #links = new Map<number, ByteString>();
  readonly #xattrs = new Map<number, ReadonlyMap<string, Buffer>>();
  readonly #digests = new Map<number, Digest>();
  // chunks, appended as nodes are created (a replaced node's chunks stay: they are few and packed anyway)
  chunkCount = 0;
  readonly #cw = new Column((n) => new Uint8Array(n)); // JS detail word
  readonly #cf = new Column((n) => new Float64Array(n)); // file offset, size, span offset, end, inner
  readonly #cd = new Column((n) => new Uint8Array(n));
  readonly #otherDigests = new Map<number, Digest>();

  add(a: NodeAttrs): number {
    const i = this.count++;
    this.#w.ensure(this.count * BW);
    this.#f.ensure(this.count * 2);
    this.set(i, a);
    const w = this.#w.a;
    w[i * BW + 6] = this.chunkCount;
    w[i * BW + 7] = a.chunks.length;
    for (const c of a.chunks) this.#addChunk(c);
    if (a.linkTarget !== undefined) this.#links.set(i, a.linkTarget);
    if (a.digest !== undefined) this.#digests.set(i, a.digest);
    return i;
  }

  /** Replace mode/owner/time/xattrs (an explicit entry for an implied or repeated directory). */
  set(i: number, a: Pick<NodeAttrs, 'type' | 'mode' | 'uid' | 'gid' | 'mtimeSec' | 'mtimeNsec' | 'xattrs'> & Partial<NodeAttrs>): void {
    const w = this.#w.a;
    const b = i * BW;
    w[b] = (TYPE_CODE[a.type] | (a.mode & 0o7777)) >>> 0;
    w[b + 1] = a.uid >>> 0;
    w[b + 2] = a.gid >>> 0;
    w[b + 3] = a.mtimeNsec >>> 0;
    if (a.rdevMajor !== undefined) w[b + 4] = a.rdevMajor >>> 0;
    if (a.rdevMinor !== undefined) w[b + 5] = a.rdevMinor >>> 0;
    if (a.size !== undefined) this.#f.a[i * 2] = a.size;
    this.#f.a[i * 2 + 1] = a.mtimeSec;
    if (a.xattrs.size > 0) this.#xattrs.set(i, a.xattrs);
    else this.#xattrs.delete(i);
  }

  isDir(i: number): boolean {
    return (this.#w.a[i * BW]! & 0o170000) === S_IF.dir;
  }
  uid(i: number): number {
    return this.#w.a[i * BW + 1]!;
  }
  gid(i: number): number {
    return this.#w.a[i * BW + 2]!;
  }
  xattrs(i: number): ReadonlyMap<string, Buffer> {
    return this.#xattrs.get(i) ?? new Map();
  }
  setXattrs(i: number, x: ReadonlyMap<string, Buffer>): void {
    this.#xattrs.set(i, x);
  }

  #addChunk(c: ChunkRef): void {
    const k = this.chunkCount++;
    const w = this.#cw.ensure(this.chunkCount);
    const f = this.#cf.ensure(this.chunkCount * 5);
    const d = this.#cd.ensure(this.chunkCount * 32);
    f[k * 5] = c.fileOffset;
    f[k * 5 + 1] = c.size;
    f[k * 5 + 2] = c.span.offset;
    f[k * 5 + 3] = c.span.end;
    f[k * 5 + 4] = c.span.innerOffset;
    if (digestAlgorithm(c.digest) === 'sha256') {
      Buffer.from(d.buffer, d.byteOffset + k * 32, 32).write(digestHex(c.digest), 'hex');
      w[k] = c.zeros ? CHUNK_ZEROS : 0;
    } else {
      this.#otherDigests.set(k, c.digest);
      w[k] = CHUNK_OTHER_DIGEST;
    }
  }

  #chunkDigest(k: number): Digest {
    if (this.#cw.a[k] === CHUNK_OTHER_DIGEST) return this.#otherDigests.get(k)!;
    const d = this.#cd.a;
    return ('sha256:' + Buffer.from(d.buffer, d.byteOffset + k * 32, 32).toString('hex')) as Digest;
  }

  /**
   * Pack the view: `names` maps every path but the root to its node (hardlinks: several paths, one
   * node). Directory runs sorted by name bytes; nlink = names per node (2 + subdirectories for
   * directories). The columns are dropped by the caller afterwards.
   */
  pack(names: ReadonlyMap<ByteString, number>, meta: Omit<TableMeta, 'uids' | 'gids'>): TableLayerIndex {
    const dirents = groupDirents(names, this.count);
    const out = new TableWriter(this.#sectionCounts(dirents));
    this.#packDirents(out, dirents);
    this.#packNodes(out, dirents);
    const spans = this.#packChunks(out);
    const { nodeFlags, fileDigests } = this.#digestExtras();
    const { uids, gids } = this.#ownerIds(dirents.reachable);
    return new TableLayerIndex(out.finish(), { spans, nodeFlags, fileDigests, chunkDigests: new Map(this.#otherDigests) }, { ...meta, uids, gids });
  }

  /** Section sizes: the string section holds dirent names, link targets, xattr names and values. */
  #sectionCounts(dirents: Dirents): TableCounts {
    let stringBytes = 0;
    for (const s of dirents.name) stringBytes += s.length;
    for (const s of this.#links.values()) stringBytes += s.length;
    let xattrs = 0;
    for (const m of this.#xattrs.values()) {
      xattrs += m.size;
      for (const [name, v] of m) stringBytes += Buffer.byteLength(name, 'utf8') + v.length;
    }
    return { nodes: this.count, chunks: this.chunkCount, dirents: dirents.count, xattrs, stringBytes };
  }

  /** The dirents in table order, and each node's first name (parent + name) in that order. */
  #packDirents(out: TableWriter, d: Dirents): void {
    const dw = out.dirents;
    const nw = out.nodes;
    const named = new Uint8Array(this.count);
    for (let p = 0; p < d.count; p++) {
      const k = d.order[p]!;
      const node = d.node[k]!;
      out.putString(d.name[k]!, 'latin1', dw, p * DW);
      dw[p * DW + 2] = node;
      if (!named[node]) {
        named[node] = 1;
        nw[node * NW + N.parent] = d.parent[k]!;
        nw[node * NW + N.nameOff] = dw[p * DW]!;
        nw[node * NW + N.nameLen] = dw[p * DW + 1]!;
      }
    }
  }

  /** Link counts: a non-directory's names; a directory's 2 + subdirectories (each one's ".."). */
  #linkCounts(d: Dirents): Uint32Array {
    const nlink = new Uint32Array(this.count);
    for (let i = 0; i < this.count; i++) if (this.isDir(i)) nlink[i] = 2;
    for (let k = 0; k < d.count; k++) {
      const node = d.node[k]!;
      if (this.isDir(node)) nlink[d.parent[k]!]!++;
      else nlink[node]!++;
    }
    return nlink;
  }

  /** Every node's record (its name is written by #packDirents), link target and xattrs. */
  #packNodes(out: TableWriter, d: Dirents): void {
    const nlink = this.#linkCounts(d);
    const nw = out.nodes;
    const w = this.#w.a;
    const f = this.#f.a;
    let xattrFirst = 0;
    for (let i = 0; i < this.count; i++) {
      const b = i * BW;
      const o = i * NW;
      nw[o + N.mode] = w[b]!;
      nw[o + N.uid] = w[b + 1]!;
      nw[o + N.gid] = w[b + 2]!;
      nw[o + N.nlink] = nlink[i]!;
      writeU64(nw, o + N.size, f[i * 2]!);
      writeI64(nw, o + N.mtimeSec, f[i * 2 + 1]!);
      nw[o + N.mtimeNsec] = w[b + 3]!;
      nw[o + N.rdevMajor] = w[b + 4]!;
      nw[o + N.rdevMinor] = w[b + 5]!;
      const link = this.#links.get(i);
      if (link !== undefined) out.putString(link, 'latin1', nw, o + N.linkOff);
      if (this.isDir(i)) {
        nw[o + N.childFirst] = d.childFirst[i]!;
        nw[o + N.childCount] = d.childCount[i]!;
      }
      nw[o + N.xattrFirst] = xattrFirst;
      nw[o + N.xattrCount] = this.#xattrs.get(i)?.size ?? 0;
      xattrFirst = this.#packXattrs(out, i, xattrFirst);
      nw[o + N.chunkFirst] = w[b + 6]!;
      nw[o + N.chunkCount] = w[b + 7]!;
    }
  }

  /** Node i's xattrs as records from `first` on; returns the next node's first record. */
  #packXattrs(out: TableWriter, i: number, first: number): number {
    const x = this.#xattrs.get(i);
    if (x === undefined) return first;
    const xw = out.xattrs;
    let at = first * XW;
    for (const [name, v] of x) {
      out.putString(name, 'utf8', xw, at);
      out.putBytes(v, xw, at + 2);
      at += XW;
    }
    return at / XW;
  }

  /** The chunk records (offset, size, sha256, flags) into the table; their compressed spans, kept by JS, returned. */
  #packChunks(out: TableWriter): Float64Array {
    const cw = out.chunks;
    const detail = this.#cw.a;
    const cf = this.#cf.a;
    const cd = this.#cd.a;
    const spans = new Float64Array(this.chunkCount * 3);
    for (let c = 0; c < this.chunkCount; c++) {
      const o = c * CW;
      writeU64(cw, o, cf[c * 5]!);
      writeU64(cw, o + 2, cf[c * 5 + 1]!);
      out.table.set(cd.subarray(c * 32, c * 32 + 32), out.chunkOffset + c * CHUNK_BYTES + 16);
      cw[o + 12] = detail[c] !== 0 ? CHUNK_JS_ONLY : 0;
      cw[o + 13] = detail[c]!;
      spans[c * 3] = cf[c * 5 + 2]!;
      spans[c * 3 + 1] = cf[c * 5 + 3]!;
      spans[c * 3 + 2] = cf[c * 5 + 4]!;
    }
    return spans;
  }

  /** Whole-file digests: a flag when it is the only chunk's digest, else kept beside the table. */
  #digestExtras(): { nodeFlags: Uint8Array; fileDigests: Map<number, Digest> } {
    const nodeFlags = new Uint8Array(this.count);
    const fileDigests = new Map<number, Digest>();
    const w = this.#w.a;
    for (const [i, digest] of this.#digests) {
      const first = w[i * BW + 6]!;
      if (w[i * BW + 7] === 1 && this.#chunkDigest(first) === digest) nodeFlags[i] = NODE_DIGEST_IS_CHUNK;
      else fileDigests.set(i, digest);
    }
    return { nodeFlags, fileDigests };
  }

  /** The owners of the nodes a name reaches (replaced nodes stay in the columns but not in the view), sorted. */
  #ownerIds(reachable: Uint8Array): { uids: number[]; gids: number[] } {
    const uids = new Set<number>();
    const gids = new Set<number>();
    for (let i = 0; i < this.count; i++) {
      if (reachable[i]) {
        uids.add(this.uid(i));
        gids.add(this.gid(i));
      }
    }
    return { uids: [...uids].sort((a, b) => a - b), gids: [...gids].sort((a, b) => a - b) };
  }
}

function writeU64(w: Uint32Array, i: number, v: number): void {
  w[i] = v % 0x1_0000_0000;
  w[i + 1] = Math.floor(v / 0x1_0000_0000);
}

function writeI64(w: Uint32Array, i: number, v: number): void {
  const hi = Math.floor(v / 0x1_0000_0000);
  w[i] = v - hi * 0x1_0000_0000;
  w[i + 1] = hi >>> 0;
}
