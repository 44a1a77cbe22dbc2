/**
 * How layer ids are presented through the mount.
 *
 * A store mounted by root shows every file with the uid/gid from its tar header (identity).
 * A store mounted by an unprivileged user through fusermount3 belongs to the initial user
 * namespace, while rootless podman reads it from its own namespace, where container uid 0 is the
 * user and container uids 1… are the user's /etc/subuid ranges. Ids shown as-is would be unmapped
 * there (every file "nobody", copy-up refused). So the store shows each layer id as the host id
 * podman maps it to: layer 0 → the user, layer n ≥ 1 → the n-th subordinate id, which podman's
 * namespace maps back to n (docs/rootless.md). Ids beyond the ranges have no host id: they are
 * shown as the overflow id 65534 (what the kernel shows for an unmapped id).
 *
 * File capabilities follow the same rule: a revision-2 `security.capability` (no root id: "root of
 * the file's namespace") becomes revision 3 with the root id mapped, so the kernel applies it to
 * programs run as root of podman's namespace; a revision-3 value has its root id mapped.
 *
 * `trusted.*` xattrs (the rootful `trusted.overlay.opaque`) are not shown by a mapped store: only
 * root of the initial namespace may read them, so an unprivileged overlay copy-up that finds one
 * listed fails with ENODATA (rootless overlay reads `user.overlay.opaque`, which stays).
 */

/** One contiguous range: layer ids [inside, inside + count) ↔ host ids [outside, outside + count). */
export interface IdRange {
  readonly inside: number;
  readonly outside: number;
  readonly count: number;
}

export interface IdMap {
  /** True when every id is shown as it is (root mounts): callers may skip the mapping. */
  readonly identity: boolean;
  uid(layerUid: number): number;
  gid(layerGid: number): number;
  /** The value an xattr is shown with (`security.capability` mapped), or undefined when it is not shown. */
  xattr(name: string, value: Buffer): Buffer | undefined;
}

/** What the kernel shows for an id its namespace does not map (/proc/sys/kernel/overflowuid). */
export const OVERFLOW_ID = 65534;

export const IDENTITY_IDS: IdMap = Object.freeze({
  identity: true,
  uid: (u: number) => u,
  gid: (g: number) => g,
  xattr: (_n: string, v: Buffer) => v,
});

function lookup(ranges: readonly IdRange[], id: number): number {
  for (const r of ranges) if (id >= r.inside && id < r.inside + r.count) return r.outside + (id - r.inside);
  return OVERFLOW_ID;
}

/**
 * The mapping rootless podman's namespace has (`podman unshare cat /proc/self/uid_map`): 0 → the
 * user's own id, then the subordinate ranges back to back from 1.
 */
export function podmanRootlessRanges(ownId: number, subordinate: readonly { start: number; count: number }[]): IdRange[] {
  const ranges: IdRange[] = [{ inside: 0, outside: ownId, count: 1 }];
  let next = 1;
  for (const s of subordinate) {
    if (s.count <= 0) continue;
    ranges.push({ inside: next, outside: s.start, count: s.count });
    next += s.count;
  }
  return ranges;
}

const CAP_NAME = 'security.capability';
const TRUSTED_PREFIX = 'trusted.';
const VFS_CAP_REVISION_MASK = 0xff000000;
const VFS_CAP_REVISION_2 = 0x02000000;
const VFS_CAP_REVISION_3 = 0x03000000;
const V2_SIZE = 20;
const V3_SIZE = 24;

/** A vfs_cap_data value with its root id mapped (rev 2 → rev 3); anything unrecognised unchanged. */
export function mapCapability(value: Buffer, rootUid: (layerUid: number) => number): Buffer {
  if (value.length < V2_SIZE) return value;
  const magic = value.readUInt32LE(0);
  const rev = (magic & VFS_CAP_REVISION_MASK) >>> 0;
  if (rev === VFS_CAP_REVISION_2 && value.length === V2_SIZE) {
    const out = Buffer.alloc(V3_SIZE);
    value.copy(out, 0, 0, V2_SIZE);
    out.writeUInt32LE(((magic & ~VFS_CAP_REVISION_MASK) | VFS_CAP_REVISION_3) >>> 0, 0);
    out.writeUInt32LE(rootUid(0) >>> 0, V2_SIZE);
    return out;
  }
  if (rev === VFS_CAP_REVISION_3 && value.length === V3_SIZE) {
    const out = Buffer.from(value);
    out.writeUInt32LE(rootUid(value.readUInt32LE(V2_SIZE)) >>> 0, V2_SIZE);
    return out;
  }
  return value;
}

/** Layer ids shown through `uids`/`gids` ranges (unmapped ids as OVERFLOW_ID). */
export function rangeIdMap(uids: readonly IdRange[], gids: readonly IdRange[]): IdMap {
  const u = [...uids];
  const g = [...gids];
  const uid = (id: number): number => lookup(u, id);
  return Object.freeze({
    identity: false,
    uid,
    gid: (id: number) => lookup(g, id),
    xattr: (name: string, value: Buffer) => (name === CAP_NAME ? mapCapability(value, uid) : name.startsWith(TRUSTED_PREFIX) ? undefined : value),
  });
}
