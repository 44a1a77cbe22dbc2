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
 * holds ~2·10⁹ layer entries per mount lifetime (the lower half).
 *
 * Control nodes (ref dirs, key dirs, info, blob, use) take their numbers from the upper half, as a
 * keyed hash of their path (a secret key: the daemon keeps one in its state dir so numbers survive
 * restarts, daemon/inode-key.ts; random per mount otherwise): any local user may look up endless made-up
 * `<ref>`/`<key>` names in the root, so a number must cost no memory and no space (audit H2). The
 * key keeps collisions from being chosen; an accidental one between two nodes the kernel holds at
 * once is refused by the native backend (ControlNodes), never served as the other path.
 */
import { createHmac, randomBytes } from 'node:crypto';
import { FuseError } from './errors.js';

export const ROOT_INO = 1;
/** Layer ranges stay below this; control numbers are at or above it. */
export const CONTROL_INO_MIN = 0x8000_0000;
const MAX_INO = 0xffff_ffff;

export class InodeAllocator {
  #next: number;
  readonly #layers = new Map<string, { base: number; count: number }>();
  readonly #key: Buffer;
  readonly #limit: number;

  /**
   * `key`: the secret of the control numbers (random when omitted). `start` lets tests place numbers
   * near the limit of layer numbers (`limit`, default CONTROL_INO_MIN - 1).
   */
  constructor(opts: { key?: Buffer; start?: number; limit?: number } = {}) {
    this.#key = opts.key ?? randomBytes(16);
    this.#next = Math.max(2, opts.start ?? 2);
    this.#limit = opts.limit ?? CONTROL_INO_MIN - 1;
  }

  #take(n: number): number {
    if (this.#next + n - 1 > this.#limit) throw new FuseError('EIO', 'inode numbers exhausted for this mount; remount');
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

  /** A stable number for a control node path ("/", "/<ref>", "/<ref>/<key>/info", …); allocates nothing. */
  control(path: string): number {
    if (path === '/') return ROOT_INO;
    const h = createHmac('sha256', this.#key).update(path, 'latin1').digest();
    return CONTROL_INO_MIN + (h.readUInt32BE(0) % (MAX_INO - CONTROL_INO_MIN + 1));
  }
}
