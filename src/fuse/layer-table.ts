/**
 * A layer's index as one flat, immutable table for the native backend: built once per served layer,
 * copied into C, then read by FUSE threads without locks and without JS. The layout is mirrored by
 * native/src/table.h (which checks every offset and count before publishing it):
 *
 *   header  8 × u32: magic "LATB", version 1, nodes, dirents, xattrs, chunks, string bytes, 0
 *   nodes   88 bytes each; node i is the index's node with ino i + 1 (node 0 = root)
 *           u32 mode (S_IFMT | perm), uid, gid, nlink; u64 size; i64 mtime sec; u32 mtime nsec,
 *           rdev major, rdev minor, parent, name off/len (first name), link off/len,
 *           child first/count, xattr first/count, chunk first/count
 *   chunks  56 bytes each: u64 file offset, u64 size, 32-byte sha256, u32 flags (1 = served by JS only: a
 *           hole, or not sha256), u32 0
 *   dirents 12 bytes each: u32 name off, name len, node; each directory's run sorted by name bytes
 *   xattrs  16 bytes each: u32 name off/len, value off/len
 *   strings raw bytes
 *
 * Names and link targets are byte strings in the model (one char code per byte), so they go in as
 * their bytes ('latin1'), whatever encoding they had in the archive. xattr names are text (PAX
 * keys and TOC keys are UTF-8), so they go in as UTF-8.
 */
import { digestAlgorithm, digestHex } from '../core/digest.js';
import { statMode, type LayerIndex, type LayerNode } from '../formats/model.js';
import { IDENTITY_IDS, type IdMap } from './id-map.js';

const MAGIC = 0x4254414c;
const VERSION = 1;
const HEADER = 32;
const NODE = 88;
const CHUNK = 56;
const DIRENT = 12;
const XATTR = 16;

/** The bytes of a model byte string. */
function bytesOf(s: string): Buffer {
  return Buffer.from(s, 'latin1');
}

class Strings {
  readonly parts: Buffer[] = [];
  size = 0;
  add(b: Buffer): [number, number] {
    const off = this.size;
    this.parts.push(b);
    this.size += b.length;
    return [off, b.length];
  }
}

/** A node's xattrs as a mapped store shows them (id-map.ts). */
function shownXattrs(node: LayerNode, ids: IdMap): [string, Buffer][] {
  const out: [string, Buffer][] = [];
  for (const [name, value] of node.xattrs) {
    const v = ids.xattr(name, value);
    if (v !== undefined) out.push([name, v]);
  }
  return out;
}

/** `ids`: how layer ids (and file capabilities) are shown (id-map.ts). */
export function encodeLayerTable(index: LayerIndex, ids: IdMap = IDENTITY_IDS): Buffer {
  const nodes = index.nodes;
  const n = nodes.length;
  const parent = new Uint32Array(n);
  const strings = new Strings();
  const nameOf: ([number, number] | undefined)[] = new Array(n);
  const childRuns: { first: number; count: number }[] = new Array(n);
  const dirents: { name: [number, number]; node: number }[] = [];
  // Breadth-first from the root: every directory's children once, in byte order.
  const queue: LayerNode[] = [index.root];
  for (let q = 0; q < queue.length; q++) {
    const dir = queue[q]!;
    const kids = dir.type === 'dir' ? [...index.readdir(dir)].map(([name, node]) => ({ name: bytesOf(name), node: node.ino - 1 })) : [];
    kids.sort((a, b) => Buffer.compare(a.name, b.name));
    childRuns[dir.ino - 1] = { first: dirents.length, count: kids.length };
    for (const k of kids) {
      const name = strings.add(k.name);
      dirents.push({ name, node: k.node });
      if (nameOf[k.node] === undefined) {
        nameOf[k.node] = name;
        parent[k.node] = dir.ino - 1;
        const child = nodes[k.node]!;
        if (child.type === 'dir') queue.push(child);
      }
    }
  }
  let chunkCount = 0;
  let xattrCount = 0;
  const shown = (node: LayerNode): Iterable<[string, Buffer]> => (ids.identity ? node.xattrs : shownXattrs(node, ids));
  for (const node of nodes) {
    if (node.type === 'reg') chunkCount += node.chunks.length;
    xattrCount += ids.identity ? node.xattrs.size : shownXattrs(node, ids).length;
  }
  const nodeBuf = Buffer.alloc(n * NODE);
  const chunkBuf = Buffer.alloc(chunkCount * CHUNK);
  const xattrBuf = Buffer.alloc(xattrCount * XATTR);
  let ci = 0;
  let xi = 0;
  for (let i = 0; i < n; i++) {
    const node = nodes[i]!;
    if (node.ino !== i + 1) throw new Error(`layer index node ${i} has ino ${node.ino}`);
    const o = i * NODE;
    nodeBuf.writeUInt32LE(statMode(node), o);
    nodeBuf.writeUInt32LE(ids.uid(node.uid) >>> 0, o + 4);
    nodeBuf.writeUInt32LE(ids.gid(node.gid) >>> 0, o + 8);
    nodeBuf.writeUInt32LE(node.nlink >>> 0, o + 12);
    nodeBuf.writeBigUInt64LE(BigInt(node.size), o + 16);
    nodeBuf.writeBigInt64LE(BigInt(Math.trunc(node.mtimeSec)), o + 24);
    nodeBuf.writeUInt32LE(node.mtimeNsec >>> 0, o + 32);
    nodeBuf.writeUInt32LE(node.rdevMajor >>> 0, o + 36);
    nodeBuf.writeUInt32LE(node.rdevMinor >>> 0, o + 40);
    nodeBuf.writeUInt32LE(parent[i]!, o + 44);
    const [nameOff, nameLen] = nameOf[i] ?? [0, 0];
    nodeBuf.writeUInt32LE(nameOff, o + 48);
    nodeBuf.writeUInt32LE(nameLen, o + 52);
    const [linkOff, linkLen] = strings.add(node.type === 'symlink' && node.linkTarget !== undefined ? bytesOf(node.linkTarget) : Buffer.alloc(0));
    nodeBuf.writeUInt32LE(linkOff, o + 56);
    nodeBuf.writeUInt32LE(linkLen, o + 60);
    const run = childRuns[i] ?? { first: 0, count: 0 };
    nodeBuf.writeUInt32LE(run.first, o + 64);
    nodeBuf.writeUInt32LE(run.count, o + 68);
    nodeBuf.writeUInt32LE(xi, o + 72);
    const first = xi;
    for (const [name, value] of shown(node)) {
      const [no, nl] = strings.add(Buffer.from(name, 'utf8')); // xattr names are text in the model (PAX keys are UTF-8)
      const [vo, vl] = strings.add(value);
      const x = xi++ * XATTR;
      xattrBuf.writeUInt32LE(no, x);
      xattrBuf.writeUInt32LE(nl, x + 4);
      xattrBuf.writeUInt32LE(vo, x + 8);
      xattrBuf.writeUInt32LE(vl, x + 12);
    }
    nodeBuf.writeUInt32LE(xi - first, o + 76);
    const chunks = node.type === 'reg' ? node.chunks : [];
    nodeBuf.writeUInt32LE(ci, o + 80);
    nodeBuf.writeUInt32LE(chunks.length, o + 84);
    for (const c of chunks) {
      const p = ci++ * CHUNK;
      chunkBuf.writeBigUInt64LE(BigInt(c.fileOffset), p);
      chunkBuf.writeBigUInt64LE(BigInt(c.size), p + 8);
      if (digestAlgorithm(c.digest) === 'sha256') chunkBuf.write(digestHex(c.digest), p + 16, 32, 'hex');
      // Holes and non-sha256 chunks are never cache objects C can open: JS serves them.
      chunkBuf.writeUInt32LE(c.zeros || digestAlgorithm(c.digest) !== 'sha256' ? 1 : 0, p + 48);
    }
  }
  const direntBuf = Buffer.alloc(dirents.length * DIRENT);
  dirents.forEach((d, k) => {
    const [off, len] = d.name;
    direntBuf.writeUInt32LE(off, k * DIRENT);
    direntBuf.writeUInt32LE(len, k * DIRENT + 4);
    direntBuf.writeUInt32LE(d.node, k * DIRENT + 8);
  });
  const header = Buffer.alloc(HEADER);
  [MAGIC, VERSION, n, dirents.length, xattrCount, chunkCount, strings.size, 0].forEach((v, k) => header.writeUInt32LE(v, k * 4));
  return Buffer.concat([header, nodeBuf, chunkBuf, direntBuf, xattrBuf, ...strings.parts]);
}
