/**
 * The native backend's layer slots: each served (ref, key) gets a slot in C holding its layer's
 * table (published once per layer; another ref of the same layer aliases that table), so C answers
 * the layer's `diff/` tree by itself. A layer the AlsTree drops is retired: C keeps answering the ids
 * the kernel still holds and frees the slot once it forgot them all, then tells JS (op SLOT_FREED).
 * A quarantined layer (content that does not match its blob) is flagged in every slot over its table.
 */
import type { Digest } from '../core/digest.js';
import type { Logger } from '../core/log.js';
import type { NativeBinding, NativeHandle } from '../../native/index.js';
import type { DiffTree } from './diff-tree.js';
import { encodeLayerTable } from './layer-table.js';

export interface SlotLayer {
  readonly tree: DiffTree;
  readonly key: Digest;
  /** The `<key>` control node the slot's `diff` entry hangs from (0: unknown). */
  parent: number;
  /** JS dropped it; C still answers the ids the kernel holds until it says SLOT_FREED. */
  retired: boolean;
}

const DIFF = Buffer.from('diff');

export class LayerSlots {
  readonly #n: NativeBinding;
  readonly #h: NativeHandle;
  readonly #logger: Logger;
  /** "<ref>/<key>" → slot (published, not retired). */
  readonly #byLayer = new Map<string, number>();
  /** key → a published slot whose table aliases may share. */
  readonly #byKey = new Map<Digest, number>();
  /** Every slot C still has, retired ones included. */
  readonly #layers = new Map<number, SlotLayer>();
  /** Layers whose quarantine reaches C. */
  readonly #watched = new WeakSet<object>();

  constructor(n: NativeBinding, h: NativeHandle, logger: Logger) {
    this.#n = n;
    this.#h = h;
    this.#logger = logger;
  }

  /** Slots of served layers (not retired). */
  get published(): number {
    return this.#byLayer.size;
  }

  layer(slot: number): SlotLayer | undefined {
    return this.#layers.get(slot);
  }

  /** The slot of (ref, key) whose resolved tree is `tree`, published on first use; `parent` is its `<key>` node. */
  slotOf(ref: string | undefined, key: Digest, tree: DiffTree, parent: number): number {
    const lk = (ref ?? '') + '/' + key;
    const known = this.#byLayer.get(lk);
    if (known !== undefined) {
      this.#layers.get(known)!.parent = parent;
      return known;
    }
    const owner = this.#byKey.get(key);
    const slot = owner !== undefined ? this.#n.alias(this.#h, owner, tree.base) : this.#publish(key, tree);
    this.#byLayer.set(lk, slot);
    this.#layers.set(slot, { tree, key, parent, retired: false });
    // Quarantined before this table existed (dropped by rmdir/LRU, looked up again): the callback fired already.
    if (tree.layer.quarantined !== undefined) this.#n.quarantine(this.#h, slot);
    return slot;
  }

  #publish(key: Digest, tree: DiffTree): number {
    const table = encodeLayerTable(tree.layer.index, tree.ids);
    const slot = this.#n.publish(this.#h, table, tree.base);
    this.#byKey.set(key, slot);
    this.#watchQuarantine(key, tree.layer);
    this.#logger.debug('fuse.native_table', { layer: key, nodes: tree.layer.index.nodeCount, bytes: table.length });
    return slot;
  }

  /**
   * C serves cached objects without asking JS: the flag on the table (shared by its aliases) stops
   * that. Every slot C still has for this layer at that moment (numbers are reused: never one
   * remembered from now), once per layer object; a table published after it fired: slotOf.
   */
  #watchQuarantine(key: Digest, layer: DiffTree['layer']): void {
    if (this.#watched.has(layer)) return;
    this.#watched.add(layer);
    layer.onQuarantine?.(() => {
      for (const [s, l] of this.#layers) {
        if (l.tree.layer !== layer) continue;
        try {
          this.#n.quarantine(this.#h, s);
        } catch (e) {
          this.#logger.warn('fuse.native_quarantine_failed', { layer: key, error: e }); // unmounted meanwhile
        }
      }
    });
  }

  /** The tree dropped (ref, key): retire its slot (C frees it once the kernel forgot its ids). */
  unpublish(ref: string | undefined, key: Digest): void {
    const lk = (ref ?? '') + '/' + key;
    const slot = this.#byLayer.get(lk);
    if (slot === undefined) return;
    this.#byLayer.delete(lk);
    if (this.#byKey.get(key) === slot) {
      const other = [...this.#byLayer.values()].find((s) => this.#layers.get(s)?.key === key);
      if (other !== undefined) this.#byKey.set(key, other);
      else this.#byKey.delete(key);
    }
    const l = this.#layers.get(slot);
    if (!l) return;
    l.retired = true;
    this.#n.unpublish(this.#h, slot, l.parent, DIFF);
    this.#logger.debug('fuse.native_unpublish', { layer: key, slot });
  }

  /**
   * C freed a retired slot: forget it, then let C reuse the number (never before: a late
   * notification could otherwise hit a newer layer in the same slot).
   */
  freed(slot: number): void {
    if (this.#layers.get(slot)?.retired) this.#layers.delete(slot);
    this.#n.slotReleased(this.#h, slot);
  }
}
