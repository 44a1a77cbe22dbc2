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
 * make runnable an image podman cannot pull (audit M1).
 */
import { DEFAULT_LIMITS, type Limits } from '../core/limits.js';
import { asByteString, displayName } from './byte-string.js';
import { FormatError } from './errors.js';
import type { ErrorContext } from '../core/errors.js';
import type { ByteString, LayerIndex, NodeType, RawEntry } from './model.js';
import { type NodeAttrs, NodeColumns } from './table-builder.js';

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
/** `.wh..wh.*` names are whiteout metadata; `.wh..wh..opq` makes its directory opaque. */
const WHITEOUT_META_PREFIX = '.wh..wh.';
const OPAQUE_WHITEOUT = '.wh..wh..opq';
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
  const view = new ViewBuilder(meta, opts);
  if (Array.isArray(raw)) view.checkEntryCount(raw.length);
  for (const e of raw) view.add(e);
  return view.finish();
}

interface Whiteout {
  readonly dir: ByteString;
  readonly name: ByteString;
  readonly uid: number;
  readonly gid: number;
  readonly mtimeSec: number;
  readonly mtimeNsec: number;
}

const IMPLIED_DIR = {
  type: 'dir', mode: 0o755, uid: 0, gid: 0, size: 0, mtimeSec: 0, mtimeNsec: 0, rdevMajor: 0, rdevMinor: 0, xattrs: NO_XATTRS, chunks: NO_CHUNKS,
} as const;

/**
 * The view while it is built: `add` takes the entries in archive order; `finish` applies what only
 * the whole layer decides (opaque directories, whiteouts a real entry did not replace) and packs it.
 */
class ViewBuilder {
  readonly #meta: LayerMeta;
  readonly #opts: BuildOptions;
  readonly #limits: Limits;
  /** Blob name for errors. */
  readonly #blob: string | undefined;
  readonly #bctx: { blob?: string };
  readonly #nodes = new NodeColumns();
  readonly #root: number;
  /** path → node for every named path in the view (whiteouts added at the end); its entries become the dirents. */
  readonly #byPath: Map<ByteString, number>;
  /** Directories created only because a descendant named them; an explicit entry may still come. */
  readonly #implied = new Set<number>();
  readonly #whiteouts: Whiteout[] = [];
  readonly #opaqueDirs: ByteString[] = [];
  #prefetchEnd: number | undefined;
  #count = 0;

  constructor(meta: LayerMeta, opts: BuildOptions) {
    this.#meta = meta;
    this.#opts = opts;
    this.#limits = opts.limits ?? DEFAULT_LIMITS;
    this.#blob = meta.blobName ?? meta.blobDigest;
    this.#bctx = this.#blob !== undefined ? { blob: this.#blob } : {};
    this.#root = this.#nodes.add(IMPLIED_DIR);
    this.#byPath = new Map([[ROOT, this.#root]]);
  }

  checkEntryCount(count: number): void {
    if (count > this.#limits.maxEntries) {
      throw new FormatError('TOC_TOO_LARGE', `${count} entries exceed the limit of ${this.#limits.maxEntries}`, this.#bctx);
    }
  }

  add(e: RawEntry): void {
    this.checkEntryCount(++this.#count);
    const ectx = { ...this.#bctx, entry: displayName(e.name) };
    const path = normalizeEntryPath(e.name, this.#limits, this.#blob);
    const [dirPath, base] = splitPath(path);
    if (this.#opts.hideEstargzArtefacts && dirPath === '' && ESTARGZ_ARTEFACTS.has(base)) {
      if (base === '.prefetch.landmark' && e.chunks[0]) this.#prefetchEnd = e.chunks[0].span.offset;
      return;
    }
    if (base.startsWith(WHITEOUT_PREFIX)) return this.#addWhiteout(e, dirPath, base, ectx);
    checkEntry(e, this.#meta, this.#limits, ectx);
    if (path === '') {
      if (e.type !== 'dir') throw new FormatError('ENTRY_INVALID', 'root entry is not a directory', ectx);
      return this.#nodes.set(this.#root, dirAttrsOf(e));
    }
    this.#ensureDir(dirPath, e.name);
    const prev = this.#byPath.get(path);
    if (prev !== undefined) return this.#impliedDirNamed(prev, e, ectx);
    this.#byPath.set(path, e.type === 'hardlink' ? this.#linkTarget(e, path, ectx) : this.#nodes.add(nodeAttrsOf(e, e.type)));
  }

  /** `.wh..wh..opq` marks its directory opaque, `.wh.<x>` hides `<x>` (applied by finish); other `.wh..wh.*` are skipped. */
  #addWhiteout(e: RawEntry, dirPath: ByteString, base: ByteString, ectx: ErrorContext): void {
    if (base === WHITEOUT_PREFIX) throw new FormatError('ENTRY_INVALID', 'bare ".wh." whiteout', ectx);
    if (base === OPAQUE_WHITEOUT) this.#opaqueDirs.push(dirPath);
    else if (!base.startsWith(WHITEOUT_META_PREFIX)) {
      const name = base.slice(WHITEOUT_PREFIX.length) as ByteString;
      this.#whiteouts.push({ dir: dirPath, name, uid: e.uid, gid: e.gid, ...landedTime(e.mtimeSec, e.mtimeNsec) });
    }
    this.#ensureDir(dirPath, e.name);
  }

  /** The directory at `path`, implied (with its missing ancestors) when no entry has named it yet. */
  #ensureDir(path: ByteString, entryName: ByteString): number {
    const existing = this.#byPath.get(path);
    if (existing !== undefined) {
      if (!this.#nodes.isDir(existing)) {
        const ctx = { ...this.#bctx, entry: displayName(entryName) };
        throw new FormatError('ENTRY_INVALID', `parent ${JSON.stringify(displayName(path))} is not a directory`, ctx);
      }
      return existing;
    }
    const [parentPath] = splitPath(path);
    this.#ensureDir(parentPath, entryName);
    const dir = this.#nodes.add(IMPLIED_DIR);
    this.#byPath.set(path, dir);
    this.#implied.add(dir);
    return dir;
  }

  /**
   * An entry whose path is already in the view: a directory listed after entries inside it (TOCs do
   * that) supplies the implied directory's metadata; anything else is a duplicate.
   */
  #impliedDirNamed(prev: number, e: RawEntry, ectx: ErrorContext): void {
    if (!this.#implied.has(prev) || e.type !== 'dir') throw new FormatError('ENTRY_DUPLICATE', 'duplicate path', ectx);
    this.#implied.delete(prev);
    this.#nodes.set(prev, dirAttrsOf(e));
  }

  /** A hardlink's node: its target's, which must be an earlier non-directory. */
  #linkTarget(e: RawEntry, path: ByteString, ectx: ErrorContext): number {
    const target = normalizeEntryPath(e.linkName ?? ROOT, this.#limits, this.#blob);
    const t = this.#byPath.get(target);
    if (t === undefined || this.#nodes.isDir(t) || target === path) {
      const msg = `hardlink target ${JSON.stringify(displayName(target))} is missing or a directory`;
      throw new FormatError('ENTRY_LINK_INVALID', msg, ectx);
    }
    return t;
  }

  finish(): LayerIndex {
    for (const d of this.#opaqueDirs) this.#markOpaque(d);
    for (const w of this.#whiteouts) this.#addWhiteoutNode(w);
    return this.#nodes.pack(this.#byPath, {
      format: this.#meta.format,
      compression: this.#meta.compression,
      blobSize: this.#meta.blobSize,
      ...(this.#meta.blobDigest !== undefined ? { blobDigest: this.#meta.blobDigest } : {}),
      ...(this.#meta.tocDigest !== undefined ? { tocDigest: this.#meta.tocDigest } : {}),
      ...(this.#meta.diffId !== undefined ? { diffId: this.#meta.diffId } : {}),
      ...(this.#meta.uncompressedSize !== undefined ? { uncompressedSize: this.#meta.uncompressedSize } : {}),
      ...(this.#prefetchEnd !== undefined ? { prefetchEnd: this.#prefetchEnd } : {}),
    });
  }

  #markOpaque(path: ByteString): void {
    const dir = this.#byPath.get(path);
    if (dir === undefined || !this.#nodes.isDir(dir)) return;
    this.#nodes.setXattrs(dir, new Map([...this.#nodes.xattrs(dir), ['trusted.overlay.opaque', OPAQUE], ['user.overlay.opaque', OPAQUE]]));
  }

  /** A whiteout as a character device 0:0, unless a real entry of the same layer took its name. */
  #addWhiteoutNode(w: Whiteout): void {
    const full = (w.dir === '' ? w.name : `${w.dir}/${w.name}`) as ByteString;
    if (this.#byPath.has(full)) return; // a real entry of the same layer wins over its whiteout
    const dir = this.#byPath.get(w.dir);
    if (dir === undefined || !this.#nodes.isDir(dir)) return;
    const node = this.#nodes.add({
      type: 'char', mode: 0, uid: w.uid, gid: w.gid, size: 0, mtimeSec: w.mtimeSec, mtimeNsec: w.mtimeNsec,
      rdevMajor: 0, rdevMinor: 0, xattrs: NO_XATTRS, chunks: NO_CHUNKS,
    });
    this.#byPath.set(full, node);
  }
}

/** A non-hardlink entry's node (`type` is the entry's). */
function nodeAttrsOf(e: RawEntry, type: NodeType): NodeAttrs {
  return {
    ...attrsOf(e),
    type,
    size: e.type === 'reg' ? e.size : e.type === 'symlink' ? (e.linkName ?? '').length : 0,
    ...(e.type === 'symlink' ? { linkTarget: e.linkName ?? ROOT } : {}),
    rdevMajor: e.type === 'char' || e.type === 'block' ? e.devMajor : 0,
    rdevMinor: e.type === 'char' || e.type === 'block' ? e.devMinor : 0,
    xattrs: e.xattrs,
    ...(e.type === 'reg' && e.digest !== undefined ? { digest: e.digest } : {}),
    chunks: e.type === 'reg' ? e.chunks : NO_CHUNKS,
  };
}

/** An explicit directory entry's metadata. */
function dirAttrsOf(e: RawEntry): Parameters<NodeColumns['set']>[1] {
  return { type: 'dir', ...attrsOf(e), xattrs: e.xattrs };
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
