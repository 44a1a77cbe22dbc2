/**
 * A layer's index as the flat, immutable table the native backend serves from. The index already is
 * that table (src/formats/index-table.ts: layout, mirrored and checked by native/src/table.h), built
 * once per layer by the overlay view. A store that shows ids as they are (root mounts) publishes the
 * very buffer: no copy, no second encoding. A mapped store (rootless, id-map.ts) publishes a copy
 * with its ids and xattrs as that store shows them.
 */
import { CHUNK_BYTES, DIRENT_BYTES, N, NODE_BYTES, TABLE_HEADER, XATTR_BYTES } from '../formats/index-table.js';
import type { LayerIndex } from '../formats/model.js';
import { IDENTITY_IDS, type IdMap } from './id-map.js';

/** `ids`: how layer ids (and file capabilities) are shown (id-map.ts). */
export function encodeLayerTable(index: LayerIndex, ids: IdMap = IDENTITY_IDS): Buffer {
  return ids.identity ? index.table : mappedTable(index, ids);
}

/** A copy of the table with mapped uids/gids and the xattrs the map shows (appended as new strings). */
function mappedTable(index: LayerIndex, ids: IdMap): Buffer {
  const t = index.table;
  const h = new Uint32Array(t.buffer, t.byteOffset, 8);
  const [n, nd, nx, nc, ns] = [h[2]!, h[3]!, h[4]!, h[5]!, h[6]!];
  const nodesEnd = TABLE_HEADER + n * NODE_BYTES;
  const direntsEnd = nodesEnd + nc * CHUNK_BYTES + nd * DIRENT_BYTES;
  const strings = t.subarray(direntsEnd + nx * XATTR_BYTES);
  const nodes = Buffer.from(t.subarray(TABLE_HEADER, nodesEnd));
  const nw = new Uint32Array(nodes.buffer, nodes.byteOffset, n * (NODE_BYTES / 4));
  const xattrs: number[] = [];
  const extra: Buffer[] = [];
  let extraLen = 0;
  const add = (b: Buffer): [number, number] => {
    extra.push(b);
    extraLen += b.length;
    return [ns + extraLen - b.length, b.length];
  };
  let i = 0;
  for (const node of index.allNodes()) {
    const o = i * (NODE_BYTES / 4);
    nw[o + N.uid] = ids.uid(node.uid) >>> 0;
    nw[o + N.gid] = ids.gid(node.gid) >>> 0;
    const first = xattrs.length / 4;
    for (const [name, value] of node.xattrs) {
      const v = ids.xattr(name, value);
      if (v !== undefined) xattrs.push(...add(Buffer.from(name, 'utf8')), ...add(v));
    }
    nw[o + N.xattrFirst] = first;
    nw[o + N.xattrCount] = xattrs.length / 4 - first;
    i++;
  }
  const header = Buffer.from(t.subarray(0, TABLE_HEADER));
  const hw = new Uint32Array(header.buffer, header.byteOffset, 8);
  hw[4] = xattrs.length / 4;
  hw[6] = ns + extraLen;
  const xbuf = Buffer.from(Uint32Array.from(xattrs).buffer);
  return Buffer.concat([header, nodes, t.subarray(nodesEnd, direntsEnd), xbuf, strings, ...extra]);
}
