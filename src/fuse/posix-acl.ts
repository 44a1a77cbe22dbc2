/**
 * POSIX ACLs in a layer (`system.posix_acl_access` / `system.posix_acl_default` xattrs). The kernel
 * enforces them on a FUSE mount only when the filesystem asks for it at init (FUSE_POSIX_ACL): the
 * native backend does; fuse-native (libfuse 2) cannot, and the kernel would then check the mode
 * bits alone — a user would read what the layer's ACL denies. Such a backend refuses these layers
 * (podman then pulls them itself) instead of serving them with weaker permissions.
 */
import type { LayerIndex } from '../formats/model.js';

export const POSIX_ACL_XATTRS = ['system.posix_acl_access', 'system.posix_acl_default'] as const;

/** Inode numbers of the layer's nodes that carry an ACL xattr (at most `limit`, for the warn line). */
export function nodesWithAcls(index: LayerIndex, limit = 5): number[] {
  const out: number[] = [];
  for (const n of index.allNodes()) {
    if (POSIX_ACL_XATTRS.some((x) => n.xattrs.has(x))) out.push(n.ino);
    if (out.length >= limit) break;
  }
  return out;
}
