/**
 * One layer's `diff/` directory, served straight from its LayerIndex. Everything except `read` is
 * answered synchronously from memory (the index is immutable), which keeps lookups, getattr and
 * readdir off any await. Content reads go to ServedLayerView.readFile, which returns verified bytes
 * or throws; a failure is logged once here with layer key, file path and chunk digest, and becomes
 * EIO for the caller.
 */
import type { Logger } from '../core/log.js';
import { displayName } from '../formats/byte-string.js';
import { statMode, type ByteString, type LayerNode } from '../formats/model.js';
import { statBlocks, type FsStat } from './adapter.js';
import { FuseError, enoent } from './errors.js';
import { IDENTITY_IDS, type IdMap } from './id-map.js';
import type { ServedLayerView } from './layer-provider.js';

/** glibc makedev(), truncated to the 32 bits fuse-native passes (major < 4096, minor < 2^20). */
function makedev32(major: number, minor: number): number {
  return ((minor & 0xff) | ((major & 0xfff) << 8) | ((minor & 0xfff00) << 12)) >>> 0;
}

export class DiffTree {
  readonly layer: ServedLayerView;
  readonly #base: number;
  readonly #logger: Logger;
  /** How layer ids are shown (identity for root mounts; see id-map.ts). */
  readonly ids: IdMap;

  /** st_ino of the layer root (node.ino 1); node.ino n has base + n - 1. */
  get base(): number {
    return this.#base;
  }

  /** `base`: inode number of node.ino 1 (see inodes.ts). */
  constructor(layer: ServedLayerView, base: number, logger: Logger, ids: IdMap = IDENTITY_IDS) {
    this.layer = layer;
    this.ids = ids;
    this.#base = base;
    this.#logger = logger;
  }

  /** Node at a layer-relative path ("" = the diff root, "a/b"). */
  node(rel: ByteString): LayerNode {
    const n = this.layer.index.lookup(rel);
    if (!n) throw enoent(displayName(rel), { layer: this.layer.key });
    return n;
  }

  stat(n: LayerNode): FsStat {
    const ms = n.mtimeSec * 1000 + Math.floor(n.mtimeNsec / 1e6);
    return {
      mode: statMode(n),
      uid: this.ids.uid(n.uid),
      gid: this.ids.gid(n.gid),
      size: n.size,
      nlink: n.nlink,
      ino: this.#base + n.ino - 1,
      rdev: n.type === 'char' || n.type === 'block' ? makedev32(n.rdevMajor, n.rdevMinor) : 0,
      blocks: statBlocks(n.size),
      blksize: 4096,
      atime: ms,
      mtime: ms,
      ctime: ms,
    };
  }

  readdir(n: LayerNode, self: FsStat, parent: FsStat): { names: string[]; stats: FsStat[] } {
    if (n.type !== 'dir') throw new FuseError('ENOTDIR', 'not a directory', { layer: this.layer.key });
    // Stats for every name: without them libfuse sends DT_UNKNOWN and overlayfs shows whiteouts as "??????".
    const names = ['.', '..'];
    const stats = [self, parent];
    for (const [name, child] of this.layer.index.readdir(n)) {
      names.push(name);
      stats.push(this.stat(child));
    }
    return { names, stats };
  }

  readlink(n: LayerNode): ByteString {
    if (n.type !== 'symlink' || n.linkTarget === undefined) throw new FuseError('EINVAL', 'not a symlink', { layer: this.layer.key });
    return n.linkTarget;
  }

  getxattr(n: LayerNode, name: string): Buffer | undefined {
    const v = n.xattrs.get(name);
    return v === undefined ? undefined : this.ids.xattr(name, v);
  }

  listxattr(n: LayerNode): string[] {
    if (this.ids.identity) return [...n.xattrs.keys()];
    return [...n.xattrs].filter(([name, v]) => this.ids.xattr(name, v) !== undefined).map(([name]) => name);
  }

  async read(n: LayerNode, rel: string, offset: number, length: number, signal?: AbortSignal): Promise<Buffer> {
    return this.#reading(n, rel, offset, length, (len) => this.layer.readFile(n, rel, offset, len, signal), Buffer.alloc(0));
  }

  /** read()'s bytes as several buffers in order (see ServedLayerView.readFileParts). */
  async readParts(n: LayerNode, rel: string, offset: number, length: number, signal?: AbortSignal): Promise<Buffer[]> {
    const layer = this.layer;
    const get = layer.readFileParts
      ? (len: number) => layer.readFileParts!(n, rel, offset, len, signal)
      : async (len: number) => [await layer.readFile(n, rel, offset, len, signal)];
    return this.#reading(n, rel, offset, length, get, []);
  }

  async #reading<T>(n: LayerNode, rel: string, offset: number, length: number, get: (len: number) => Promise<T>, empty: T): Promise<T> {
    if (n.type !== 'reg') throw new FuseError('EISDIR', 'not a regular file', { layer: this.layer.key, entry: rel });
    if (offset >= n.size || length <= 0) return empty;
    const len = Math.min(length, n.size - offset);
    try {
      return await get(len);
    } catch (e) {
      const ctx = (e as { context?: { chunk?: string } }).context;
      this.#logger.error('fuse.read_failed', {
        layer: this.layer.key,
        path: rel,
        chunk: ctx?.chunk,
        offset,
        length: len,
        error: e,
      });
      throw new FuseError('EIO', 'read failed', { layer: this.layer.key, entry: rel, ...(ctx?.chunk ? { chunk: ctx.chunk } : {}) }, { cause: e });
    }
  }
}
