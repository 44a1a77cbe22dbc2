/**
 * The Additional Layer Store namespace (als-contract.md §3–§7) as FuseOps:
 *
 *   /                                   root
 *   /<refB64>/<key>/{diff/…,info,blob}  store configured with ":ref"
 *   /<key>/{diff/…,info,blob}           store configured without it (both work at once: a root
 *                                       child that parses as a digest is a key, anything else must be
 *                                       canonical padded base64 of a normalised reference)
 *
 * `<refB64>` and `<key>` directories exist for every well-formed name and cost nothing: the
 * provider is asked on the first lookup of `diff`, `info` or `blob` (c/storage checks them in that
 * order), so `rmdir(<key>)` always reaches us (release + ENOENT, also for untracked layers) and
 * negative answers come from the provider's own fast path. A positive answer is cached here per
 * (ref, key) so that everything inside `diff/` is answered synchronously from the index.
 *
 * `use` never exists; CREATE or MKNOD of it counts a use and answers ENOENT. Everything else that
 * writes answers EROFS.
 */
import { constants } from 'node:fs';
import { isDigest, type Digest } from '../core/digest.js';
import type { Logger } from '../core/log.js';
import type { ByteString } from '../formats/model.js';
import { refFromBase64 } from '../sources/reference.js';
import { AccessPolicy } from './access-policy.js';
import { statBlocks, type FsStat, type FsStatfs, type FuseOps, type OpContext, type WriteOp } from './adapter.js';
import { IDENTITY_IDS, type IdMap } from './id-map.js';
import { DiffTree } from './diff-tree.js';
import { FuseError, enoent, erofs } from './errors.js';
import { InodeAllocator, ROOT_INO } from './inodes.js';
import type { LayerProvider, ServedLayerView } from './layer-provider.js';
import { nodesWithAcls } from './posix-acl.js';

type FileWhere =
  | { kind: 'info' | 'blob'; ref: string | undefined; key: Digest }
  | { kind: 'diff'; ref: string | undefined; key: Digest; rel: ByteString };
export type Where =
  | { kind: 'root' }
  | { kind: 'ref'; ref: string }
  | { kind: 'key' | 'use'; ref: string | undefined; key: Digest }
  | FileWhere;

interface Served {
  readonly tree: DiffTree;
  readonly ref: string | undefined;
  readonly key: Digest;
}

interface OpenFile {
  readonly where: FileWhere;
  readonly served: Served;
}

export interface AlsTreeOptions {
  readonly provider: LayerProvider;
  readonly logger: Logger;
  /** Layers kept resolved here (the catalog keeps its own cache behind this one). */
  readonly maxLayers: number;
  readonly inodes?: InodeAllocator;
  readonly now?: () => number;
  /** Who may make the store resolve layers (default: root and the daemon's uid). */
  readonly policy?: AccessPolicy;
  /** How layer ids are shown (default identity; a rootless store maps them, see id-map.ts). */
  readonly ids?: IdMap;
  /** Refuse layers carrying POSIX ACLs: the backend cannot have the kernel enforce them (posix-acl.ts). */
  readonly refuseAcls?: boolean;
}

/** Told when the tree stops serving (ref, key): evicted past maxLayers, or released by `rmdir`. */
export type DropListener = (ref: string | undefined, key: Digest) => void;

const O_ACCMODE = 3;
const WRITE_FLAGS = constants.O_WRONLY | constants.O_RDWR | constants.O_TRUNC | constants.O_APPEND | constants.O_CREAT;

export class AlsTree implements FuseOps {
  readonly #provider: LayerProvider;
  readonly #logger: Logger;
  readonly #maxLayers: number;
  readonly #inodes: InodeAllocator;
  readonly #mtime: number;
  readonly #policy: AccessPolicy;
  readonly #ids: IdMap;
  readonly #refuseAcls: boolean;
  /** Layers refused for their ACLs (warned once each; only layers that exist get here). */
  readonly #aclRefusedKeys = new Set<string>();
  readonly #served = new Map<string, Served>();
  readonly #inflight = new Map<string, Promise<Served | undefined>>();
  readonly #validRefs = new Map<string, boolean>();
  readonly #open = new Map<number, OpenFile>();
  #nextFh = 1;
  #onDrop: DropListener | undefined;

  constructor(opts: AlsTreeOptions) {
    this.#provider = opts.provider;
    this.#logger = opts.logger;
    this.#maxLayers = opts.maxLayers;
    this.#inodes = opts.inodes ?? new InodeAllocator();
    this.#mtime = (opts.now ?? Date.now)();
    this.#policy = opts.policy ?? AccessPolicy.rootOnly();
    this.#ids = opts.ids ?? IDENTITY_IDS;
    this.#refuseAcls = opts.refuseAcls ?? false;
  }

  // --- path parsing --------------------------------------------------------------------------

  #isRef(elem: string): boolean {
    let ok = this.#validRefs.get(elem);
    if (ok === undefined) {
      try {
        refFromBase64(elem);
        ok = true;
      } catch {
        ok = false;
      }
      if (this.#validRefs.size > 10_000) this.#validRefs.clear();
      this.#validRefs.set(elem, ok);
    }
    return ok;
  }

  /** Parse a mount path; throws ENOENT for names the store never has. */
  where(path: string): Where {
    if (path === '/') return { kind: 'root' };
    const parts = path.slice(1).split('/');
    let ref: string | undefined;
    let i = 0;
    const first = parts[0]!;
    if (!isDigest(first)) {
      if (!this.#isRef(first)) throw enoent(path);
      ref = first;
      i = 1;
      if (parts.length === 1) return { kind: 'ref', ref };
    }
    const key = parts[i]!;
    if (!isDigest(key)) throw enoent(path);
    const rest = parts.slice(i + 1);
    if (rest.length === 0) return { kind: 'key', ref, key };
    const head = rest[0]!;
    // FuseOps paths are ByteStrings (adapter.ts), so the part below diff/ is one as well.
    if (head === 'diff') return { kind: 'diff', ref, key, rel: rest.slice(1).join('/') as ByteString };
    if (rest.length === 1 && (head === 'info' || head === 'blob')) return { kind: head, ref, key };
    if (rest.length === 1 && head === 'use') return { kind: 'use', ref, key };
    throw enoent(path); // diff1, info/x, anything else
  }

  // --- layer resolution ----------------------------------------------------------------------

  #cacheKey(ref: string | undefined, key: Digest): string {
    return (ref ?? '') + '/' + key;
  }

  /** The served layer, synchronously when already resolved. */
  #layer(ref: string | undefined, key: Digest): Served | Promise<Served | undefined> {
    const ck = this.#cacheKey(ref, key);
    const hit = this.#served.get(ck);
    if (hit) return hit;
    let p = this.#inflight.get(ck);
    if (!p) {
      p = (async () => {
        const t0 = performance.now();
        try {
          const layer = await this.#provider.lookup(ref, key);
          // when podman asked and how long it waited: the pull timeline (bench/e2e/pull.ts)
          this.#logger.debug('als.lookup', { layer: key, found: layer !== undefined, ms: Math.round(performance.now() - t0) });
          if (!layer || this.#aclRefused(ck, layer)) return undefined;
          const base = this.#inodes.layerBase(key, layer.index.nodeCount);
          const served: Served = { tree: new DiffTree(layer, base, this.#logger, this.#ids), ref, key };
          this.#served.set(ck, served);
          while (this.#served.size > this.#maxLayers) this.#drop(this.#served.keys().next().value!);
          return served;
        } finally {
          this.#inflight.delete(ck);
        }
      })();
      this.#inflight.set(ck, p);
    }
    return p;
  }

  /** A layer whose ACLs this backend cannot enforce: refused with a warning (posix-acl.ts). */
  #aclRefused(ck: string, layer: ServedLayerView): boolean {
    if (!this.#refuseAcls) return false;
    if (this.#aclRefusedKeys.has(ck)) return true;
    const nodes = nodesWithAcls(layer.index);
    if (nodes.length === 0) return false;
    this.#logger.warn('fuse.layer_refused_acl', {
      layer: layer.key,
      inodes: nodes,
      reason: 'the layer carries POSIX ACLs (system.posix_acl_*), which the fuse-native backend cannot have the kernel enforce; use the native backend',
    });
    this.#aclRefusedKeys.add(ck);
    return true;
  }

  #drop(ck: string): void {
    const s = this.#served.get(ck);
    if (!s) return;
    this.#served.delete(ck);
    try {
      this.#onDrop?.(s.ref, s.key);
    } catch (e) {
      // The drop already happened; a listener's failure must not fail the rmdir or lookup behind it.
      this.#logger.error('fuse.drop_listener_failed', { layer: s.key, error: e });
    }
  }

  /** One listener (the native backend unpublishes the layer's table; see DropListener). */
  setDropListener(f: DropListener | undefined): void {
    this.#onDrop = f;
  }

  /**
   * The served layer of (ref, key), resolving it when needed; undefined when the store does not
   * serve it. For the native backend, which publishes the layer's table once it is resolved.
   */
  served(ref: string | undefined, key: Digest, path: string, ctx?: OpContext): Promise<{ readonly tree: DiffTree } | undefined> {
    // Resolution is what the access policy guards: the same check as every other path here.
    this.#policy.check(ctx?.caller, path);
    return Promise.resolve(this.#layer(ref, key));
  }

  /** Whether (ref, key) is a layer already resolved and served (no lookup, no policy check). */
  isServed(ref: string | undefined, key: Digest): boolean {
    return this.#served.has(this.#cacheKey(ref, key));
  }

  /** Resolve `w`'s layer, then continue synchronously (no await when it is already known). */
  #withLayer<T>(w: { ref: string | undefined; key: Digest }, path: string, f: (s: Served) => T, ctx?: OpContext): T | Promise<T> {
    // Backends that know the caller check it here too (fuse-native relies on the dir modes).
    this.#policy.check(ctx?.caller, path);
    const l = this.#layer(w.ref, w.key);
    if (!(l instanceof Promise)) return f(l);
    return l.then((s) => {
      if (!s) throw enoent(path, { layer: w.key });
      return f(s);
    });
  }

  // --- attributes ----------------------------------------------------------------------------

  /**
   * Control nodes. `<refB64>` and `<key>` dirs carry the access policy's owner/group/mode: with
   * default_permissions the kernel refuses lookups below them to users who may not resolve.
   */
  #ctlStat(path: string, type: 'dir' | 'reg', size = 0): FsStat {
    const dir = type === 'dir';
    const d = this.#policy.controlDir;
    return {
      mode: dir ? 0o040000 | d.mode : 0o100444,
      uid: dir ? d.uid : 0,
      gid: dir ? d.gid : 0,
      size,
      nlink: dir ? 2 : 1,
      ino: path === '/' ? ROOT_INO : this.#inodes.control(path),
      rdev: 0,
      blocks: statBlocks(size),
      blksize: 4096,
      atime: this.#mtime,
      mtime: this.#mtime,
      ctime: this.#mtime,
    };
  }

  #diffPath(w: { ref: string | undefined; key: Digest }): string {
    return (w.ref !== undefined ? `/${w.ref}/` : '/') + w.key;
  }

  /** 0711: anyone may traverse (podman, resolve lists), but only root may list which refs are served (audit L4). */
  #rootStat(): FsStat {
    return { ...this.#ctlStat('/', 'dir'), mode: 0o040711 };
  }

  getattr(path: string, ctx?: OpContext): FsStat | Promise<FsStat> {
    const w = this.where(path);
    switch (w.kind) {
      case 'root':
        return this.#rootStat();
      case 'ref':
      case 'key':
        return this.#ctlStat(path, 'dir');
      case 'use':
        throw enoent(path);
      case 'info':
        return this.#withLayer(w, path, (s) => this.#ctlStat(path, 'reg', s.tree.layer.info.length), ctx);
      case 'blob':
        return this.#withLayer(w, path, (s) => this.#ctlStat(path, 'reg', s.tree.layer.blobSize), ctx);
      case 'diff':
        return this.#withLayer(w, path, (s) => s.tree.stat(s.tree.node(w.rel)), ctx);
    }
  }

  readdir(path: string, ctx?: OpContext): { names: string[]; stats: FsStat[] } | Promise<{ names: string[]; stats: FsStat[] }> {
    const w = this.where(path);
    const self = w.kind === 'root' ? this.#rootStat() : this.#ctlStat(path, 'dir');
    const names = ['.', '..'];
    const stats = [self, self];
    switch (w.kind) {
      case 'root':
      case 'ref': {
        // Known layers only: the namespace itself is unbounded.
        const seen = new Set<string>();
        for (const s of this.#served.values()) {
          const name = w.kind === 'root' ? (s.ref ?? s.key) : s.ref === w.ref ? s.key : undefined;
          if (name === undefined || seen.has(name)) continue;
          seen.add(name);
          names.push(name);
          stats.push(this.#ctlStat(path === '/' ? `/${name}` : `${path}/${name}`, 'dir'));
        }
        return { names, stats };
      }
      case 'key': {
        this.#policy.check(ctx?.caller, path);
        const l = this.#layer(w.ref, w.key);
        const list = (s: Served | undefined): { names: string[]; stats: FsStat[] } => {
          if (!s) return { names, stats };
          names.push('diff', 'info', 'blob');
          stats.push(
            s.tree.stat(s.tree.layer.index.root),
            this.#ctlStat(`${path}/info`, 'reg', s.tree.layer.info.length),
            this.#ctlStat(`${path}/blob`, 'reg', s.tree.layer.blobSize),
          );
          return { names, stats };
        };
        return l instanceof Promise ? l.then(list) : list(l);
      }
      case 'diff':
        return this.#withLayer(w, path, (s) => {
          const n = s.tree.node(w.rel);
          const st = s.tree.stat(n);
          const parentRel = (w.rel.includes('/') ? w.rel.slice(0, w.rel.lastIndexOf('/')) : '') as ByteString;
          const parent = w.rel === '' ? this.#ctlStat(this.#diffPath(w), 'dir') : s.tree.stat(s.tree.node(parentRel));
          return s.tree.readdir(n, st, parent);
        }, ctx);
      default:
        throw new FuseError('ENOTDIR', 'not a directory', { entry: path });
    }
  }

  readlink(path: string, ctx?: OpContext): string | Promise<string> {
    const w = this.where(path);
    if (w.kind !== 'diff') throw new FuseError('EINVAL', 'not a symlink', { entry: path });
    return this.#withLayer(w, path, (s) => s.tree.readlink(s.tree.node(w.rel)), ctx);
  }

  getxattr(path: string, name: string, ctx?: OpContext): Buffer | undefined | Promise<Buffer | undefined> {
    const w = this.where(path);
    if (w.kind !== 'diff') return undefined;
    return this.#withLayer(w, path, (s) => s.tree.getxattr(s.tree.node(w.rel), name), ctx);
  }

  listxattr(path: string, ctx?: OpContext): string[] | Promise<string[]> {
    const w = this.where(path);
    if (w.kind !== 'diff') return [];
    return this.#withLayer(w, path, (s) => s.tree.listxattr(s.tree.node(w.rel)), ctx);
  }

  // --- files ---------------------------------------------------------------------------------

  open(path: string, flags: number, ctx?: OpContext): number | Promise<number> {
    const w = this.where(path);
    if (w.kind === 'use') throw enoent(path);
    if (w.kind !== 'diff' && w.kind !== 'info' && w.kind !== 'blob') throw new FuseError('EISDIR', 'is a directory', { entry: path });
    if ((flags & O_ACCMODE) !== constants.O_RDONLY || (flags & WRITE_FLAGS) !== 0) throw erofs(path);
    return this.#withLayer(w, path, (served) => {
      if (w.kind === 'diff' && served.tree.node(w.rel).type !== 'reg') throw new FuseError('EISDIR', 'not a regular file', { entry: path });
      let fh = this.#nextFh;
      while (this.#open.has(fh)) fh = fh >= 0xffff_fff0 ? 1 : fh + 1;
      this.#nextFh = fh >= 0xffff_fff0 ? 1 : fh + 1;
      this.#open.set(fh, { where: w, served });
      return fh;
    }, ctx);
  }

  release(_path: string, fh: number): void {
    this.#open.delete(fh);
  }

  read(path: string, fh: number, offset: number, length: number, ctx: OpContext): Buffer | Promise<Buffer> {
    const f = this.#open.get(fh);
    if (!f) throw new FuseError('EBADF', 'unknown file handle', { entry: path });
    const layer = f.served.tree.layer;
    switch (f.where.kind) {
      case 'info':
        return layer.info.subarray(offset, offset + length);
      case 'blob': {
        if (offset >= layer.blobSize) return Buffer.alloc(0);
        const len = Math.min(length, layer.blobSize - offset);
        return layer.readBlob(offset, len, ctx.signal).catch((e: unknown) => {
          this.#logger.error('fuse.blob_read_failed', { layer: layer.key, offset, length: len, error: e });
          throw new FuseError('EIO', 'blob read failed', { layer: layer.key, range: [offset, offset + len] }, { cause: e });
        });
      }
      case 'diff': {
        const rel = f.where.rel;
        return f.served.tree.read(f.served.tree.node(rel), rel, offset, length, ctx.signal);
      }
    }
  }

  // --- the use / release protocol and everything else that writes ------------------------------

  #use(path: string, ctx?: OpContext): never {
    const w = this.where(path);
    if (w.kind === 'use') {
      this.#policy.check(ctx?.caller, path);
      this.#provider.use(w.ref, w.key);
      throw enoent(path); // contract §5.3: counted, and the file never exists
    }
    throw erofs(path);
  }

  create(path: string, _mode?: number, ctx?: OpContext): number {
    return this.#use(path, ctx);
  }

  mknod(path: string, _mode?: number, _dev?: number, ctx?: OpContext): void {
    this.#use(path, ctx);
  }

  rmdir(path: string): void {
    const w = this.where(path);
    if (w.kind === 'key') {
      this.#provider.release(w.ref, w.key);
      // c/storage no longer uses it here: stop holding it (a later walk resolves it again, cheaply).
      this.#drop(this.#cacheKey(w.ref, w.key));
      throw enoent(path); // contract §5.5: nothing is removed
    }
    throw erofs(path);
  }

  mutate(_op: WriteOp, path: string): never {
    throw erofs(path);
  }

  statfs(): FsStatfs {
    return { bsize: 4096, frsize: 4096, blocks: 0, bfree: 0, bavail: 0, files: 0, ffree: 0, favail: 0, fsid: 0, flag: 0, namemax: 255 };
  }

  access(): void {
    // Never asked with default_permissions (the kernel checks modes itself); kept for backends
    // mounted without it. No EACCES from here (contract §8.4).
  }

  /** For `status`: how many layers and open files this mount holds. */
  stats(): { layers: number; openFiles: number; resolving: number } {
    return { layers: this.#served.size, openFiles: this.#open.size, resolving: this.#inflight.size };
  }
}
