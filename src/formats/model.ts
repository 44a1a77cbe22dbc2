/**
 * The one layer-index model every format reader produces (eStargz, legacy stargz, estargz-zstd,
 * zstd:chunked, plain tar/gzip/zstd), and the overlay view the store serves as `diff/`.
 *
 * Readers parse their TOC (or scan the tar) into RawEntry[] in archive order; overlay-view.ts turns
 * those into a LayerIndex: normalised and checked paths, implied parents, hardlinks resolved to shared
 * nodes, OCI whiteouts mapped to overlayfs form, format artefacts hidden, stable inode numbers.
 *
 * File content is described by ChunkRefs: each names the sha256 of its uncompressed bytes (the
 * verification unit and the cache key) and where in the compressed blob to decode it from. Content
 * is only ever obtained through chunk-reader.ts, which verifies every chunk before returning it.
 */
import type { Digest } from '../core/digest.js';

declare const byteStringBrand: unique symbol;
/**
 * A file name, path or link target as bytes: a JS string whose every char code is one byte (Node's
 * 'latin1' mapping), so any Linux name, non-UTF-8 included, round-trips losslessly. Build and
 * convert them only with the helpers in byte-string.ts (the edges: tar bytes, TOC JSON text, the
 * kernel, UTF-8-only consumers). Byte order is plain string order.
 */
export type ByteString = string & { readonly [byteStringBrand]: true };

export type LayerFormat =
  | 'estargz' // gzip eStargz, 51-byte footer
  | 'stargz-legacy' // google/crfs stargz, 47-byte footer, no chunk digests
  | 'estargz-zstd' // stargz-snapshotter zstd variant, 40-byte footer "GnUlInUx"
  | 'zstd-chunked' // containers/storage zstd:chunked, 64-byte footer "GNUlInUx"
  | 'tar' // plain uncompressed tar
  | 'tar+gzip'
  | 'tar+zstd';

export type Compression = 'none' | 'gzip' | 'zstd';

/** containers/storage `compression` enum values used in the ALS `info` file. */
export const STORAGE_COMPRESSION: Readonly<Record<Compression, number>> = { none: 0, gzip: 2, zstd: 4 };

/** Archive entry types as they appear in a TOC or tar (before the overlay mapping). */
export type RawEntryType = 'dir' | 'reg' | 'symlink' | 'hardlink' | 'char' | 'block' | 'fifo';
/** Node types of the overlay view (hardlinks are shared nodes, not a type). */
export type NodeType = 'dir' | 'reg' | 'symlink' | 'char' | 'block' | 'fifo';

/** Where to decode a chunk from. Offsets are in the compressed blob. */
interface CompressedSpan {
  /** Blob offset at which decoding starts: a gzip member / zstd frame boundary (or raw tar offset). */
  readonly offset: number;
  /** Blob offset (exclusive) past which no bytes are needed to decode this chunk. */
  readonly end: number;
  /** Offset of the chunk's first byte within the uncompressed stream decoded from `offset`. */
  readonly innerOffset: number;
}

export interface ChunkRef {
  /** sha256 of the chunk's uncompressed bytes: what it is verified against, and its cache key. */
  readonly digest: Digest;
  /** Offset of the chunk within its file. */
  readonly fileOffset: number;
  /** Uncompressed length. */
  readonly size: number;
  readonly span: CompressedSpan;
  /** zstd:chunked hole: the chunk is `size` zero bytes and need not be fetched (digest still checked). */
  readonly zeros?: boolean;
}

/**
 * What a tar header and an inode both carry. `mode`: in a RawEntry the tar mode, which may include
 * S_IFMT bits (only `mode & 0o7777` is used); in a LayerNode the permission bits including
 * suid/sgid/sticky. `size`: a regular file's content length (a LayerNode's symlink: the target's byte
 * length); 0 for others. `mtimeSec`/`mtimeNsec`: seconds since the epoch and nanoseconds (a RawEntry's as
 * the archive says, may be negative; a LayerNode's as landed, see landedTime).
 */
export interface EntryStat {
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  readonly size: number;
  readonly mtimeSec: number;
  readonly mtimeNsec: number;
}

/** One archive entry as a reader found it (TOC entry or tar header), before normalisation. */
export interface RawEntry extends EntryStat {
  /** Name as in the archive, as bytes (may start with "./", dirs may end in "/"). */
  readonly name: ByteString;
  readonly type: RawEntryType;
  /** Symlink target, or hardlink target path (archive name of the earlier entry), as bytes. */
  readonly linkName?: ByteString;
  readonly devMajor: number;
  readonly devMinor: number;
  /** xattr name (text: PAX keys and TOC keys are UTF-8) → raw value (TOC base64 already decoded, PAX SCHILY.xattr.* values). */
  readonly xattrs: ReadonlyMap<string, Buffer>;
  /** Whole-content digest, when the format records it. */
  readonly digest?: Digest;
  /** Regular files with size > 0: chunks sorted by fileOffset, contiguous, covering [0, size). */
  readonly chunks: readonly ChunkRef[];
}

/**
 * An inode of the overlay view. Hardlinked names share one inode. Nodes are read from the index's
 * table when asked for (index-table.ts): key per-node state by `ino`, not by object identity.
 */
export interface LayerNode extends EntryStat {
  /** Stable inode number: 1 = root, then in order of first appearance; same TOC ⇒ same numbers. */
  readonly ino: number;
  readonly type: NodeType;
  /** Symlink target, as bytes. */
  readonly linkTarget?: ByteString | undefined;
  readonly rdevMajor: number;
  readonly rdevMinor: number;
  /** xattrs as served (opaque dirs carry trusted.overlay.opaque and user.overlay.opaque = "y"). */
  readonly xattrs: ReadonlyMap<string, Buffer>;
  /** Number of names (hardlinks) for non-directories; for directories 2 + number of subdirectories. */
  readonly nlink: number;
  readonly digest?: Digest | undefined;
  readonly chunks: readonly ChunkRef[];
}

export interface LayerIndex {
  readonly format: LayerFormat;
  readonly compression: Compression;
  readonly blobSize: number;
  /** Blob digest when known (from the descriptor, or verified for plain layers). */
  readonly blobDigest?: Digest;
  /** Verified TOC digest as the producer computes it (eStargz: sha256 of the JSON; zstd:chunked: of the compressed TOC). */
  readonly tocDigest?: Digest;
  /** diffID verified by a full pass over the layer (plain layers); undefined for lazily read layers. */
  readonly diffId?: Digest;
  /** Uncompressed tar length, when verified by a full pass. */
  readonly uncompressedSize?: number;
  /** eStargz: blob offset at which `.prefetch.landmark`'s payload starts (prefetch [0, prefetchEnd)). */
  readonly prefetchEnd?: number;
  readonly root: LayerNode;
  /** Number of nodes: inode numbers run 1..nodeCount. */
  readonly nodeCount: number;
  /** The node with inode number `ino` (views: two calls give equal, not identical, objects). */
  node(ino: number): LayerNode;
  /** Every node, in inode order (reachable or not: a replaced tar entry keeps its number). */
  allNodes(): Iterable<LayerNode>;
  /** The whole index as one flat table (index-table.ts), the buffer the native backend serves from. */
  readonly table: Buffer;
  /** Distinct uids / gids in the layer, sorted (for the ALS `info` uidset/gidset). */
  readonly uids: readonly number[];
  readonly gids: readonly number[];
  /** Look up a normalised path as bytes ("" = root, "a/b", no leading slash). */
  lookup(path: ByteString): LayerNode | undefined;
  /** Children of a directory node, sorted by name (byte order). */
  readdir(dir: LayerNode): readonly [ByteString, LayerNode][];
  /** Every (path, node) pair in depth-first, name-sorted order, root first. */
  walk(): Iterable<[ByteString, LayerNode]>;
}

/** The S_IFMT bits of each node type, as stat(2) and FUSE report them. */
export const S_IF: Readonly<Record<NodeType, number>> = {
  dir: 0o040000,
  reg: 0o100000,
  symlink: 0o120000,
  char: 0o020000,
  block: 0o060000,
  fifo: 0o010000,
};

/** st_mode of a node: its type's S_IFMT bits and its permission bits. */
export function statMode(node: Pick<LayerNode, 'type' | 'mode'>): number {
  return (S_IF[node.type] | (node.mode & 0o7777)) >>> 0;
}
