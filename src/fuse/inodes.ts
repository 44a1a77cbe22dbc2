/**
 * Inode numbers for the whole mount, unique across layers.
 *
 * fuse-native hands st_ino to libfuse as a uint32 (fuse-native.c populate_stat: `st_ino = *ints++`),
 * so numbers must fit in 32 bits; test/fuse/inodes.test.ts checks that a number just below 2^32
 * arrives intact through a real mount (with `use_ino`, smuggled through fsname). A fixed
 * `(slot << k) | ino` split would cap either layers or entries per layer (4M entries need 22 bits,
 * leaving 1024 layers), so instead every layer key gets a contiguous range the size of its index,
 * allocated from one counter when the layer is first served. A layer's numbers are then
 * `base + node.ino - 1`: stable for the life of the mount (the range is remembered per key even when
 * the layer object itself is dropped), hardlinks share a number because they share a node, and the
 * same layer seen through two refs gets the same numbers (it is the same content). The 32-bit space
 * holds ~4·10⁹ entries per mount lifetime. Control nodes (ref dirs, key dirs, info, blob) get
 * single numbers from the same counter, keyed by path.
 */
import { FuseError } from './errors.js';

export const ROOT_INO = 1;
const MAX_INO = 0xffff_ffff;

export class InodeAllocator {
  #next: number;
  readonly #layers = new Map<string, { base: number; count: number }>();
  readonly #control = new Map<string, number>();
  readonly #maxControl: number;

  /** `start` lets tests place numbers near the 32-bit limit. */
  constructor(opts: { start?: number; maxControlNodes?: number } = {}) {
    this.#next = Math.max(2, opts.start ?? 2);
    this.#maxControl = opts.maxControlNodes ?? 1_000_000;
  }

  #take(n: number): number {
    if (this.#next + n - 1 > MAX_INO) throw new FuseError('EIO', 'inode numbers exhausted for this mount (2^32); remount');
    const base = this.#next;
    this.#next += n;
    return base;
  }

  /** First inode number of a layer's range (node.ino 1 ↦ base). */
  layerBase(key: string, nodeCount: number): number {
    const r = this.#layers.get(key);
    if (r && r.count >= nodeCount) return r.base;
    const base = this.#take(Math.max(1, nodeCount));
    this.#layers.set(key, { base, count: nodeCount });
    return base;
  }

  /** A stable number for a control node path ("/", "/<ref>", "/<ref>/<key>/info", …). */
  control(path: string): number {
    if (path === '/') return ROOT_INO;
    let ino = this.#control.get(path);
    if (ino === undefined) {
      // Paths are attacker-chosen only in the sense that any local process can look them up; bound
      // the table. Forgetting old entries only renumbers a control node, never layer content.
      if (this.#control.size >= this.#maxControl) this.#control.clear();
      ino = this.#take(1);
      this.#control.set(path, ino);
    }
    return ino;
  }
}
