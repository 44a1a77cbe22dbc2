/**
 * The overlay view's names as the table's directory entries: one dirent per name but the root,
 * grouped by parent directory (a counting sort) and sorted by name bytes within each run, the order
 * lookups and readdir rely on (index-table.ts).
 */
import type { ByteString } from './model.js';

export interface Dirents {
  readonly count: number;
  /** Per dirent, in the order of the names map: its parent node, its node, its last path component. */
  readonly parent: Uint32Array;
  readonly node: Uint32Array;
  readonly name: readonly ByteString[];
  /** Dirent numbers in table order: by parent, then by name bytes. */
  readonly order: Uint32Array;
  /** Per node: where its run of children starts in `order`, and how long it is. */
  readonly childFirst: Uint32Array;
  readonly childCount: Uint32Array;
  /** Per node: 1 when a name (the root's "" included) reaches it. */
  readonly reachable: Uint8Array;
}

/** `names` maps every path of the view to its node; the root ("") is node 0. */
export function groupDirents(names: ReadonlyMap<ByteString, number>, nodeCount: number): Dirents {
  const count = names.size - 1;
  const parent = new Uint32Array(count);
  const node = new Uint32Array(count);
  const name: ByteString[] = new Array(count);
  const childCount = new Uint32Array(nodeCount);
  const reachable = new Uint8Array(nodeCount);
  let k = 0;
  for (const [path, n] of names) {
    reachable[n] = 1;
    if (path === '') continue;
    const slash = path.lastIndexOf('/');
    const p = slash < 0 ? 0 : names.get(path.slice(0, slash) as ByteString)!;
    parent[k] = p;
    node[k] = n;
    name[k] = (slash < 0 ? path : path.slice(slash + 1)) as ByteString;
    childCount[p]!++;
    k++;
  }
  const childFirst = runStarts(childCount);
  const order = sortedRuns(parent, name, childFirst, childCount);
  return { count, parent, node, name, order, childFirst, childCount, reachable };
}

/** Prefix sums: each run starts where the previous one ends. */
function runStarts(lengths: Uint32Array): Uint32Array {
  const first = new Uint32Array(lengths.length);
  for (let i = 0, run = 0; i < lengths.length; i++) {
    first[i] = run;
    run += lengths[i]!;
  }
  return first;
}

/** Dirent numbers grouped by parent (counting sort, stable), each run then sorted by name bytes. */
function sortedRuns(parent: Uint32Array, name: readonly ByteString[], childFirst: Uint32Array, childCount: Uint32Array): Uint32Array {
  const order = new Uint32Array(parent.length);
  const fill = childFirst.slice();
  for (let d = 0; d < parent.length; d++) order[fill[parent[d]!]!++] = d;
  // A byte string's code units are its bytes: `<` compares them in byte order.
  const byName = (a: number, b: number): number => (name[a]! < name[b]! ? -1 : name[a]! > name[b]! ? 1 : 0);
  for (let i = 0; i < childCount.length; i++) {
    if (childCount[i]! > 1) order.subarray(childFirst[i], childFirst[i]! + childCount[i]!).sort(byName);
  }
  return order;
}
