/**
 * RawEntry[] (archive order) → LayerIndex (the overlay-ready view served as `diff/`).
 *
 * Rules (docs/formats.md §6, als-contract.md §8.1):
 *  - names are normalised ("./a/b/" → "a/b"); absolute names, "..", NUL, over-long names are
 *    rejected (ENTRY_PATH_UNSAFE): a layer is never allowed to address anything outside its root;
 *  - missing parent directories are implied (0755 root:root, mtime 0);
 *  - `.wh.<x>` becomes a character device 0:0 named `<x>` (mode 0, the entry's owner and mtime),
 *    unless the same layer has a real `<x>`, which wins; `.wh..wh..opq` makes its directory opaque
 *    (`trusted.overlay.opaque` and `user.overlay.opaque` = "y", so rootful, rootless and
 *    fuse-overlayfs all see it); other `.wh..wh.*` names are metadata and skipped; `.wh.` alone is
 *    invalid;
 *  - eStargz artefacts (the TOC entry and the prefetch landmarks at the root) are hidden;
 *  - hardlinks become extra names of their target's node (shared inode, nlink counted);
 *  - inode numbers: root = 1, then in order of creation, so the same TOC always gives the same numbers.
 * Duplicate names are rejected (ENTRY_DUPLICATE) in every format, plain tars included: podman's own
 * unpack refuses them (tar-split: "duplicates of file paths not supported"), so serving one would
 * make runnable an image podman cannot pull (audit M1). A directory listed after entries inside it
 * is not a duplicate: the explicit entry supplies the implied directory's metadata.
 */
import { DEFAULT_LIMITS, type Limits } from '../core/limits.js';
import { asByteString, displayName } from './byte-string.js';
import { FormatError } from './errors.js';
import type { ByteString, LayerIndex, RawEntry } from './model.js';
import { NodeColumns } from './table-builder.js';

/** What the reader knows of the blob, carried into the index as it is. */
export interface LayerMeta extends Pick<LayerIndex, 'format' | 'compression' | 'blobSize' | 'blobDigest' | 'tocDigest' | 'diffId' | 'uncompressedSize'> {
  /** Blob name for error messages. */
  readonly blobName?: string;
}

export interface BuildOptions {
  /** Hide `stargz.index.json`, `.prefetch.landmark`, `.no.prefetch.landmark` at the root. */
  readonly hideEstargzArtefacts: boolean;
  readonly limits?: Limits;
}

const OPAQUE = Buffer.from('y');
/** Longest symlink target Linux stores: PATH_MAX (4096) less the terminating NUL. */
const MAX_SYMLINK_TARGET = 4095;
const NO_XATTRS: ReadonlyMap<string, Buffer> = new Map();
const NO_CHUNKS: readonly never[] = Object.freeze([]);
const ESTARGZ_ARTEFACTS = new Set<string>(['stargz.index.json', '.prefetch.landmark', '.no.prefetch.landmark']);
/** Longest name the kernel takes for one path component (NAME_MAX), in bytes. */
export const NAME_MAX = 255;
const WHITEOUT_PREFIX = '.wh.';
const ROOT = asByteString('');


/**
 * Normalise an archive name (bytes) to "a/b" ("" = root). Throws ENTRY_PATH_UNSAFE for hostile
 * names. Length limits apply to the name that lands on disk: a whiteout `.wh.<x>` is checked as
 * `<x>` (its `.wh.` form may be 4 bytes over NAME_MAX, as Go's archive/tar writes it).
 */
export function normalizeEntryPath(name: ByteString, limits: Limits = DEFAULT_LIMITS, blob?: string): ByteString {
  const ctx = { entry: displayName(name), ...(blob !== undefined ? { blob } : {}) };
  if (name.includes('\0')) throw new FormatError('ENTRY_PATH_UNSAFE', 'path contains NUL', ctx);
  if (name.startsWith('/')) throw new FormatError('ENTRY_PATH_UNSAFE', 'absolute path', ctx);
  const parts: string[] = [];
  let onDisk = 0;
  for (const p of name.split('/')) {
    if (p === '' || p === '.') continue;
    if (p === '..') throw new FormatError('ENTRY_PATH_UNSAFE', 'path contains ".."', ctx);
    // A ByteString's length is its byte length.
    const landed = p.startsWith(WHITEOUT_PREFIX) ? p.length - WHITEOUT_PREFIX.length : p.length;
    if (landed > NAME_MAX) throw new FormatError('ENTRY_PATH_UNSAFE', 'path component longer than 255 bytes', ctx);
    onDisk += (parts.length > 0 ? 1 : 0) + landed;
    parts.push(p);
  }
  if (onDisk > limits.maxPathBytes) throw new FormatError('ENTRY_PATH_UNSAFE', 'path too long', ctx);
  return parts.join('/') as ByteString;
}

function splitPath(p: ByteString): [ByteString, ByteString] {
  const i = p.lastIndexOf('/');
  return i < 0 ? [ROOT, p] : [p.slice(0, i) as ByteString, p.slice(i + 1) as ByteString];
}


/**
 * Times as containers/storage unpacks them: an mtime before the epoch lands as 0 (its unpacker
 * clamps it); later times are kept exactly, nanoseconds included. Served values are never negative,
 * so no unsigned consumer (the FUSE binding) can wrap them.
 */
export function landedTime(sec: number, nsec: number): { mtimeSec: number; mtimeNsec: number } {
  return sec < 0 ? { mtimeSec: 0, mtimeNsec: 0 } : { mtimeSec: sec, mtimeNsec: nsec };
}

export function buildLayerIndex(raw: Iterable<RawEntry>, meta: LayerMeta, opts: BuildOptions): LayerIndex {
  const limits = opts.limits ?? DEFAULT_LIMITS;
  const blob = meta.blobName ?? meta.blobDigest;
  const bctx = blob !== undefined ? { blob } : {};
  const tooMany = (count: number): FormatError => new FormatError('TOC_TOO_LARGE', `${count} entries exceed the limit of ${limits.maxEntries}`, bctx);
  if (Array.isArray(raw) && raw.length > limits.maxEntries) throw tooMany(raw.length);
  const nodes = new NodeColumns();
  const dirAttrs = { type: 'dir', mode: 0o755, uid: 0, gid: 0, size: 0, mtimeSec: 0, mtimeNsec: 0, rdevMajor: 0, rdevMinor: 0, xattrs: NO_XATTRS, chunks: NO_CHUNKS } as const;
  const root = nodes.add(dirAttrs);
  /** path → node for every named path in the view (whiteouts added at the end); its entries become the dirents. */
  const byPath = new Map<ByteString, number>([[ROOT, root]]);
  /** Directories created only because a descendant named them; an explicit entry may still come. */
  const implied = new Set<number>();
  const whiteouts: { dir: ByteString; name: ByteString; uid: number; gid: number; mtimeSec: number; mtimeNsec: number }[] = [];
  const opaqueDirs: ByteString[] = [];
  let prefetchEnd: number | undefined;

  const ensureDir = (path: ByteString, entryName: ByteString): number => {
    const existing = byPath.get(path);
    if (existing !== undefined) {
      if (!nodes.isDir(existing)) {
        throw new FormatError('ENTRY_INVALID', `parent ${JSON.stringify(displayName(path))} is not a directory`, { ...bctx, entry: displayName(entryName) });
      }
      return existing;
    }
    const [parentPath] = splitPath(path);
    ensureDir(parentPath, entryName);
    const dir = nodes.add(dirAttrs);
    byPath.set(path, dir);
    implied.add(dir);
    return dir;
  };

  let count = 0;
  for (const e of raw) {
    if (++count > limits.maxEntries) throw tooMany(count);
    const ectx = { ...bctx, entry: displayName(e.name) };
    const path = normalizeEntryPath(e.name, limits, blob);
    const [dirPath, base] = splitPath(path);
    if (opts.hideEstargzArtefacts && dirPath === '' && ESTARGZ_ARTEFACTS.has(base)) {
      if (base === '.prefetch.landmark' && e.chunks[0]) prefetchEnd = e.chunks[0].span.offset;
      continue;
    }
    if (base.startsWith('.wh.')) {
      if (base === '.wh.') throw new FormatError('ENTRY_INVALID', 'bare ".wh." whiteout', ectx);
      if (base === '.wh..wh..opq') opaqueDirs.push(dirPath);
      else if (!base.startsWith('.wh..wh.')) {
        whiteouts.push({ dir: dirPath, name: base.slice(4) as ByteString, uid: e.uid, gid: e.gid, ...landedTime(e.mtimeSec, e.mtimeNsec) });
      }
      ensureDir(dirPath, e.name);
      continue;
    }
    checkEntry(e, meta, limits, ectx);
    if (path === '') {
      if (e.type !== 'dir') throw new FormatError('ENTRY_INVALID', 'root entry is not a directory', ectx);
      nodes.set(root, { type: 'dir', ...attrsOf(e), xattrs: e.xattrs });
      continue;
    }
    ensureDir(dirPath, e.name);
    const prev = byPath.get(path);
    if (prev !== undefined && implied.has(prev) && e.type === 'dir') {
      // TOCs may list a directory after entries inside it: the explicit entry supplies the metadata.
      implied.delete(prev);
      nodes.set(prev, { type: 'dir', ...attrsOf(e), xattrs: e.xattrs });
      continue;
    }
    if (prev !== undefined) throw new FormatError('ENTRY_DUPLICATE', 'duplicate path', ectx);
    let node: number;
    if (e.type === 'hardlink') {
      const target = normalizeEntryPath(e.linkName ?? ROOT, limits, blob);
      const t = byPath.get(target);
      if (t === undefined || nodes.isDir(t) || target === path) {
        throw new FormatError('ENTRY_LINK_INVALID', `hardlink target ${JSON.stringify(displayName(target))} is missing or a directory`, ectx);
      }
      node = t;
    } else {
      node = nodes.add({
        ...attrsOf(e),
        type: e.type,
        size: e.type === 'reg' ? e.size : e.type === 'symlink' ? (e.linkName ?? '').length : 0,
        ...(e.type === 'symlink' ? { linkTarget: e.linkName ?? ROOT } : {}),
        rdevMajor: e.type === 'char' || e.type === 'block' ? e.devMajor : 0,
        rdevMinor: e.type === 'char' || e.type === 'block' ? e.devMinor : 0,
        xattrs: e.xattrs,
        ...(e.type === 'reg' && e.digest !== undefined ? { digest: e.digest } : {}),
        chunks: e.type === 'reg' ? e.chunks : NO_CHUNKS,
      });
    }
    byPath.set(path, node);
  }

  for (const d of opaqueDirs) {
    const dir = byPath.get(d);
    if (dir === undefined || !nodes.isDir(dir)) continue;
    nodes.setXattrs(dir, new Map([...nodes.xattrs(dir), ['trusted.overlay.opaque', OPAQUE], ['user.overlay.opaque', OPAQUE]]));
  }
  for (const w of whiteouts) {
    const full = (w.dir === '' ? w.name : `${w.dir}/${w.name}`) as ByteString;
    if (byPath.has(full)) continue; // a real entry of the same layer wins over its whiteout
    const dir = byPath.get(w.dir);
    if (dir === undefined || !nodes.isDir(dir)) continue;
    const node = nodes.add({
      type: 'char', mode: 0, uid: w.uid, gid: w.gid, size: 0, mtimeSec: w.mtimeSec, mtimeNsec: w.mtimeNsec,
      rdevMajor: 0, rdevMinor: 0, xattrs: NO_XATTRS, chunks: NO_CHUNKS,
    });
    byPath.set(full, node);
  }

  return nodes.pack(byPath, {
    format: meta.format,
    compression: meta.compression,
    blobSize: meta.blobSize,
    ...(meta.blobDigest !== undefined ? { blobDigest: meta.blobDigest } : {}),
    ...(meta.tocDigest !== undefined ? { tocDigest: meta.tocDigest } : {}),
    ...(meta.diffId !== undefined ? { diffId: meta.diffId } : {}),
    ...(meta.uncompressedSize !== undefined ? { uncompressedSize: meta.uncompressedSize } : {}),
    ...(prefetchEnd !== undefined ? { prefetchEnd } : {}),
  });
}

/** The permission bits an entry lands with: Linux symlinks are always 0777, whatever the header says
 * (podman's unpack shows lrwxrwxrwx: audit L1). */
export function landedMode(type: RawEntry['type'], mode: number): number {
  return type === 'symlink' ? 0o777 : mode & 0o7777;
}

function attrsOf(e: RawEntry): { mode: number; uid: number; gid: number; mtimeSec: number; mtimeNsec: number } {
  return { mode: landedMode(e.type, e.mode), uid: e.uid, gid: e.gid, ...landedTime(e.mtimeSec, e.mtimeNsec) };
}

function checkEntry(e: RawEntry, meta: LayerMeta, limits: Limits, ctx: { entry: string; blob?: string }): void {
  const intOk = (v: number, max = Number.MAX_SAFE_INTEGER): boolean => Number.isSafeInteger(v) && v >= 0 && v <= max;
  if (!intOk(e.uid, 0xffffffff) || !intOk(e.gid, 0xffffffff)) throw new FormatError('ENTRY_INVALID', 'bad uid/gid', ctx);
  if (!intOk(e.mode)) throw new FormatError('ENTRY_INVALID', 'bad mode', ctx);
  if (!Number.isSafeInteger(e.mtimeSec) || !intOk(e.mtimeNsec, 999_999_999)) throw new FormatError('ENTRY_INVALID', 'bad mtime', ctx);
  if (!intOk(e.devMajor, 0xffffffff) || !intOk(e.devMinor, 0xffffffff)) throw new FormatError('ENTRY_INVALID', 'bad device numbers', ctx);
  let xattrBytes = 0;
  for (const [k, v] of e.xattrs) {
    if (k.length === 0 || k.includes('\0')) throw new FormatError('ENTRY_INVALID', 'bad xattr name', ctx);
    xattrBytes += k.length + v.length;
  }
  if (xattrBytes > limits.maxXattrBytes) throw new FormatError('ENTRY_INVALID', 'xattrs too large', ctx);
  if ((e.type === 'symlink' || e.type === 'hardlink') && (e.linkName === undefined || e.linkName.includes('\0'))) {
    throw new FormatError('ENTRY_INVALID', `${e.type} without a valid link name`, ctx);
  }
  // No Linux filesystem holds a longer target (PATH_MAX incl. NUL): podman's unpack fails with
  // ENAMETOOLONG, so serving it would run an image podman cannot pull (audit M1).
  if (e.type === 'symlink' && e.linkName !== undefined && e.linkName.length > MAX_SYMLINK_TARGET) {
    throw new FormatError('ENTRY_INVALID', `symlink target of ${e.linkName.length} bytes (at most ${MAX_SYMLINK_TARGET})`, ctx);
  }
  if (e.type !== 'reg') {
    if (e.chunks.length > 0) throw new FormatError('ENTRY_INVALID', `${e.type} entry carries content chunks`, ctx);
    return;
  }
  if (!intOk(e.size)) throw new FormatError('ENTRY_INVALID', `bad size ${e.size}`, ctx);
  if (e.size === 0) {
    if (e.chunks.length > 0) throw new FormatError('CHUNK_INVALID', 'empty file with chunks', ctx);
    return;
  }
  if (e.chunks.length === 0) throw new FormatError('CHUNK_INVALID', 'non-empty file without chunks', ctx);
  let pos = 0;
  for (const c of e.chunks) {
    const cctx = { ...ctx, chunk: c.digest };
    if (c.fileOffset !== pos) throw new FormatError('CHUNK_INVALID', `chunk at ${c.fileOffset}, expected ${pos}: gap or overlap`, cctx);
    if (!intOk(c.size) || c.size === 0 || c.size > limits.maxChunkBytes) {
      throw new FormatError('CHUNK_INVALID', `bad chunk size ${c.size}`, cctx);
    }
    const s = c.span;
    if (!c.zeros) {
      if (!intOk(s.offset) || !intOk(s.end) || !intOk(s.innerOffset) || s.offset >= s.end || s.end > meta.blobSize) {
        throw new FormatError('CHUNK_INVALID', `compressed span ${s.offset}-${s.end} is outside the blob of ${meta.blobSize} bytes`, {
          ...cctx,
          range: [s.offset, s.end],
        });
      }
      if (meta.compression !== 'none' && s.end - s.offset > limits.maxCompressedSpanBytes) {
        throw new FormatError('CHUNK_INVALID', 'compressed span too large', { ...cctx, range: [s.offset, s.end] });
      }
    }
    pos += c.size;
  }
  if (pos !== e.size) throw new FormatError('CHUNK_INVALID', `chunks cover ${pos} bytes of a ${e.size}-byte file`, ctx);
}
