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
  TABLE_HEADER,
  TABLE_MAGIC,
  TABLE_VERSION,
  TableLayerIndex,
  XATTR_BYTES,
  type TableMeta,
} from './index-table.js';
import { type ByteString, type ChunkRef, type EntryStat, type NodeType, S_IF } from './model.js';

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
    const n = this.count;
    const w = this.#w.a;
    // dirents: parent, name, node — grouped by parent (counting sort), then sorted by name in each run
    const direntCount = names.size - 1;
    const dParent = new Uint32Array(direntCount);
    const dNode = new Uint32Array(direntCount);
    const dName: ByteString[] = new Array(direntCount);
    const childCount = new Uint32Array(n);
    const nlink = new Uint32Array(n);
    const reachable = new Uint8Array(n);
    let k = 0;
    for (const [path, node] of names) {
      reachable[node] = 1;
      if (path === '') continue;
      const slash = path.lastIndexOf('/');
      const parent = slash < 0 ? 0 : names.get(path.slice(0, slash) as ByteString)!;
      dParent[k] = parent;
      dNode[k] = node;
      dName[k] = (slash < 0 ? path : path.slice(slash + 1)) as ByteString;
      childCount[parent]!++;
      if (!this.isDir(node)) nlink[node]!++;
      else nlink[parent]!++; // a subdirectory's ".." (the 2 is added below)
      k++;
    }
    const childFirst = new Uint32Array(n);
    for (let i = 0, run = 0; i < n; i++) {
      childFirst[i] = run;
      run += childCount[i]!;
    }
    const order = new Uint32Array(direntCount);
    const fill = childFirst.slice();
    for (let d = 0; d < direntCount; d++) order[fill[dParent[d]!]!++] = d;
    for (let i = 0; i < n; i++) {
      if (childCount[i]! > 1) {
        const run = order.subarray(childFirst[i], childFirst[i]! + childCount[i]!);
        run.sort((a, b) => (dName[a]! < dName[b]! ? -1 : dName[a]! > dName[b]! ? 1 : 0));
      }
    }
    // string bytes and xattr count
    let stringBytes = 0;
    for (const s of dName) stringBytes += s.length;
    for (const s of this.#links.values()) stringBytes += s.length;
    let xattrCount = 0;
    for (const m of this.#xattrs.values()) {
      xattrCount += m.size;
      for (const [name, v] of m) stringBytes += Buffer.byteLength(name, 'utf8') + v.length;
    }
    const chunkCount = this.chunkCount;
    const total = TABLE_HEADER + n * NODE_BYTES + chunkCount * CHUNK_BYTES + direntCount * DIRENT_BYTES + xattrCount * XATTR_BYTES + stringBytes;
    const table = Buffer.alloc(total);
    const h = new Uint32Array(table.buffer, table.byteOffset, 8);
    h.set([TABLE_MAGIC, TABLE_VERSION, n, direntCount, xattrCount, chunkCount, stringBytes, 0]);
    const nodeOff = TABLE_HEADER;
    const chunkOff = nodeOff + n * NODE_BYTES;
    const direntOff = chunkOff + chunkCount * CHUNK_BYTES;
    const xattrOff = direntOff + direntCount * DIRENT_BYTES;
    const strOff = xattrOff + xattrCount * XATTR_BYTES;
    const nw = new Uint32Array(table.buffer, table.byteOffset + nodeOff, n * (NODE_BYTES / 4));
    const cw = new Uint32Array(table.buffer, table.byteOffset + chunkOff, chunkCount * (CHUNK_BYTES / 4));
    const dw = new Uint32Array(table.buffer, table.byteOffset + direntOff, direntCount * (DIRENT_BYTES / 4));
    const xw = new Uint32Array(table.buffer, table.byteOffset + xattrOff, xattrCount * (XATTR_BYTES / 4));
    let str = 0;
    const putString = (s: string, enc: 'latin1' | 'utf8'): [number, number] => {
      const len = table.write(s, strOff + str, enc);
      const at = str;
      str += len;
      return [at, len];
    };
    // dirents, and each node's first name (parent + name) in dirent order
    const named = new Uint8Array(n);
    for (let p = 0; p < direntCount; p++) {
      const d = order[p]!;
      const [off, len] = putString(dName[d]!, 'latin1');
      dw[p * 3] = off;
      dw[p * 3 + 1] = len;
      dw[p * 3 + 2] = dNode[d]!;
      const node = dNode[d]!;
      if (!named[node]) {
        named[node] = 1;
        nw[node * 22 + N.parent] = dParent[d]!;
        nw[node * 22 + N.nameOff] = off;
        nw[node * 22 + N.nameLen] = len;
      }
    }
    const f = this.#f.a;
    const uids = new Set<number>();
    const gids = new Set<number>();
    const nodeFlags = new Uint8Array(n);
    const fileDigests = new Map<number, Digest>();
    let xi = 0;
    for (let i = 0; i < n; i++) {
      const b = i * BW;
      const o = i * 22;
      const dir = this.isDir(i);
      nw[o + N.mode] = w[b]!;
      nw[o + N.uid] = w[b + 1]!;
      nw[o + N.gid] = w[b + 2]!;
      nw[o + N.nlink] = dir ? 2 + nlink[i]! : nlink[i]!;
      writeU64(nw, o + N.size, f[i * 2]!);
      writeI64(nw, o + N.mtimeSec, f[i * 2 + 1]!);
      nw[o + N.mtimeNsec] = w[b + 3]!;
      nw[o + N.rdevMajor] = w[b + 4]!;
      nw[o + N.rdevMinor] = w[b + 5]!;
      const link = this.#links.get(i);
      if (link !== undefined) [nw[o + N.linkOff], nw[o + N.linkLen]] = putString(link, 'latin1');
      if (dir) {
        nw[o + N.childFirst] = childFirst[i]!;
        nw[o + N.childCount] = childCount[i]!;
      }
      const x = this.#xattrs.get(i);
      nw[o + N.xattrFirst] = xi;
      nw[o + N.xattrCount] = x?.size ?? 0;
      if (x) {
        for (const [name, v] of x) {
          const [no, nl] = putString(name, 'utf8');
          const vo = str;
          v.copy(table, strOff + str);
          str += v.length;
          xw.set([no, nl, vo, v.length], xi++ * 4);
        }
      }
      const cFirst = w[b + 6]!;
      const cCount = w[b + 7]!;
      nw[o + N.chunkFirst] = cFirst;
      nw[o + N.chunkCount] = cCount;
      const digest = this.#digests.get(i);
      if (digest !== undefined) {
        if (cCount === 1 && this.#chunkDigest(cFirst) === digest) nodeFlags[i] = NODE_DIGEST_IS_CHUNK;
        else fileDigests.set(i, digest);
      }
      if (reachable[i]) {
        uids.add(w[b + 1]!);
        gids.add(w[b + 2]!);
      }
    }
    // chunks
    const cf = this.#cf.a;
    const cd = this.#cd.a;
    const spans = new Float64Array(chunkCount * 3);
    for (let c = 0; c < chunkCount; c++) {
      const o = c * 14;
      writeU64(cw, o, cf[c * 5]!);
      writeU64(cw, o + 2, cf[c * 5 + 1]!);
      table.set(cd.subarray(c * 32, c * 32 + 32), chunkOff + c * CHUNK_BYTES + 16);
      const detail = this.#cw.a[c]!;
      cw[o + 12] = detail !== 0 ? CHUNK_JS_ONLY : 0;
      cw[o + 13] = detail;
      spans[c * 3] = cf[c * 5 + 2]!;
      spans[c * 3 + 1] = cf[c * 5 + 3]!;
      spans[c * 3 + 2] = cf[c * 5 + 4]!;
    }
    if (str !== stringBytes) throw new Error(`layer table strings: wrote ${str} of ${stringBytes} bytes`);
    return new TableLayerIndex(
      table,
      { spans, nodeFlags, fileDigests, chunkDigests: new Map(this.#otherDigests) },
      { ...meta, uids: [...uids].sort((a, b) => a - b), gids: [...gids].sort((a, b) => a - b) },
    );
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
