/**
 * Compares two `corpus.py list` listings of one layer — the tree the store serves and the tree
 * podman unpacked from a normal pull — field by field, names as bytes (hex keys).
 *
 * Fields: presence, type, mode (incl. suid/sgid/sticky), uid, gid, size (regular files and
 * symlinks), sha256 of the content, symlink target, mtime in ns, nlink, rdev, and every xattr.
 */
import type { ListedEntry } from './corpus-image.js';

export type Listing = ReadonlyMap<string, ListedEntry>;

export interface Difference {
  /** hex bytes of the path ("" = the layer root) */
  readonly path: string;
  /** `presence`, a ListedEntry field, or `xattr:<hex name>` */
  readonly field: string;
  readonly served: string;
  readonly podman: string;
}

const FIELDS = ['type', 'mode', 'uid', 'gid', 'size', 'sha256', 'link', 'mtime_ns', 'nlink', 'rdev'] as const;
export const ABSENT = '(absent)';

const show = (v: unknown): string => (v === undefined ? ABSENT : typeof v === 'string' ? v : JSON.stringify(v));

/** Every difference between the served listing and podman's. */
export function diffListings(served: Listing, podman: Listing): Difference[] {
  const out: Difference[] = [];
  for (const [path, p] of podman) {
    const s = served.get(path);
    if (!s) {
      out.push({ path, field: 'presence', served: ABSENT, podman: p.type });
      continue;
    }
    for (const f of FIELDS) {
      const a = show(s[f]);
      const b = show(p[f]);
      if (a !== b) out.push({ path, field: f, served: a, podman: b });
    }
    for (const n of new Set([...Object.keys(s.xattrs), ...Object.keys(p.xattrs)])) {
      const a = show(s.xattrs[n]);
      const b = show(p.xattrs[n]);
      if (a !== b) out.push({ path, field: `xattr:${n}`, served: a, podman: b });
    }
  }
  for (const [path, s] of served) if (!podman.has(path)) out.push({ path, field: 'presence', served: s.type, podman: ABSENT });
  return out;
}

/** Value of a field in a listing (as diffListings shows it). */
export function fieldValue(l: Listing, path: string, field: string): string {
  const e = l.get(path);
  if (field === 'presence') return e ? e.type : ABSENT;
  if (!e) return ABSENT;
  if (field.startsWith('xattr:')) return show(e.xattrs[field.slice(6)]);
  return show(e[field as keyof ListedEntry]);
}

const hexOf = (s: string): string => Buffer.from(s, 'latin1').toString('hex');
export const XATTR_TRUSTED_OPAQUE = hexOf('trusted.overlay.opaque');
export const XATTR_USER_OPAQUE = hexOf('user.overlay.opaque');
/** eStargz bookkeeping entries at the layer root (not layer content; see the test). */
export const ESTARGZ_BOOKKEEPING = new Set(['stargz.index.json', '.prefetch.landmark', '.no.prefetch.landmark'].map(hexOf));

/** Human-readable line for a difference. */
export function describeDifference(d: Difference, showPath: (hex: string) => string): string {
  const field = d.field.startsWith('xattr:') ? `xattr ${JSON.stringify(Buffer.from(d.field.slice(6), 'hex').toString('latin1'))}` : d.field;
  const cut = (v: string): string => (v.length > 80 ? `${v.slice(0, 64)}…(${v.length} chars)` : v);
  return `${showPath(d.path)}: ${field} podman=${cut(d.podman)} store=${cut(d.served)}`;
}
