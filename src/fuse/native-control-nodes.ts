/**
 * The native backend's control nodes (root, `<ref>`, `<key>`, `info`, `blob`, `use`): C hands their
 * requests to JS by node id, which is the AlsTree's inode number; this maps the ids back to paths
 * while the kernel holds them (the lookups it was given minus its forgets), so the map is bounded by
 * what the kernel keeps.
 */
import { FuseError } from './errors.js';

interface ControlNode {
  readonly path: string;
  refs: number;
}

/** The mount root's node id (held for the mount's life). */
const ROOT_ID = 1;

export class ControlNodes {
  readonly #byId = new Map<number, ControlNode>([[ROOT_ID, { path: '/', refs: 1 }]]);

  get size(): number {
    return this.#byId.size;
  }

  /** The path of a node the kernel holds; ENOENT for one it has forgotten (or never had). */
  pathOf(nodeid: number): string {
    const p = this.#byId.get(nodeid);
    if (p === undefined) throw new FuseError('ENOENT', 'unknown control node', { entry: String(nodeid) });
    return p.path;
  }

  /** The path of a held node, or undefined (for notifications, which throw nothing). */
  find(nodeid: number): string | undefined {
    return this.#byId.get(nodeid)?.path;
  }

  /** False when `nodeid` is held for another path (a hash clash: answering would alias the two). */
  canHold(nodeid: number, path: string): boolean {
    const c = this.#byId.get(nodeid);
    return c === undefined || c.path === path;
  }

  /** The kernel took one more lookup of `nodeid` (at `path`). */
  held(nodeid: number, path: string): void {
    const c = this.#byId.get(nodeid);
    if (c && c.path === path) c.refs++;
    else this.#byId.set(nodeid, { path, refs: 1 });
  }

  /** The kernel forgot `n` lookups of `nodeid`; the root is never forgotten. */
  forgot(nodeid: number, n: number): void {
    const c = this.#byId.get(nodeid);
    if (!c || nodeid === ROOT_ID) return;
    c.refs -= n;
    if (c.refs <= 0) this.#byId.delete(nodeid);
  }
}

/** A child's path under a control node's path (`name` as raw bytes). */
export function childPath(parent: string, name: Buffer): string {
  return (parent === '/' ? '/' : parent + '/') + name.toString('latin1');
}
