/**
 * The contract of every format reader, and of the dispatcher (open-layer.ts) that picks one.
 *
 * openLayer(blob, options) → OpenedLayer: the verified LayerIndex plus a LayerRecord, a JSON-able
 * record from which the index can be rebuilt without the blob (the store persists it so layers are
 * served again after a restart, offline). Loading a record re-verifies the TOC digest.
 *
 * Trust: a TOC is used only after its bytes hash to `expectedTocDigest` (from the descriptor
 * annotation or the store key). A plain layer's index is returned only after the whole blob hashed to
 * its digest and, when `diffId` is given, the uncompressed tar to the diffID.
 */
import type { RandomAccessBlob } from '../core/blob.js';
import type { Digest } from '../core/digest.js';
import type { Limits } from '../core/limits.js';
import type { ChunkRef, LayerFormat, LayerIndex } from './model.js';

export interface LayerDescriptor {
  readonly mediaType?: string;
  readonly digest?: Digest;
  readonly size?: number;
  readonly annotations?: Readonly<Record<string, string>>;
}

export interface OpenLayerOptions {
  readonly descriptor?: LayerDescriptor;
  /** The TOC digest the TOC must hash to. Defaults to the one in descriptor.annotations. */
  readonly expectedTocDigest?: Digest;
  /** config.rootfs.diff_ids[i]: checked for plain layers; recorded only for lazily read ones. */
  readonly diffId?: Digest;
  /**
   * Accept a TOC with no expected digest (CLI `inspect` of a local file): its digest is computed and
   * reported, chunks are still verified against it. The store never sets this.
   */
  readonly allowUnpinnedToc?: boolean;
  /**
   * Read a TOC format (eStargz, zstd:chunked) as the plain tar stream it also is: one full pass that
   * verifies the blob digest and diffID before anything is served, even when its TOC is pinned. The
   * store sets it for TOC layers looked up by blob digest (`era_a_toc_layers = "verify"`).
   */
  readonly wholePass?: boolean;
  /** Force a format instead of detecting it (tests). */
  readonly format?: LayerFormat;
  readonly limits?: Limits;
  readonly signal?: AbortSignal;
  /**
   * Plain layers: receives each regular file's content, chunk by chunk, during the single pass,
   * BEFORE the blob digest / diffID are known to match. Stage it; commit only after openLayer resolves.
   */
  readonly onPlainChunk?: (chunk: ChunkRef, data: Buffer, path: string) => Promise<void> | void;
  /**
   * Plain layers, `lazy-als extract` only: the caller keeps every piece onPlainChunk gave it and never
   * reads content through the index, so the pass hashes each byte once (blob digest, diffID) and not
   * every piece and file again. The chunks then carry UNADDRESSED_DIGEST, which no bytes hash to (a
   * read through that index fails verification), and the layer has no record (reading it throws).
   * The store never sets this.
   */
  readonly unaddressedPieces?: boolean;
}

export interface LayerRecord {
  readonly version: 1;
  readonly format: LayerFormat;
  readonly blobSize: number;
  readonly blobDigest?: string;
  readonly tocDigest?: string;
  readonly diffId?: string;
  readonly uncompressedSize?: number;
  /** Format-specific positions (e.g. tocOffset) needed to rebuild spans. */
  readonly params: Readonly<Record<string, number>>;
  /** base64 of the verified TOC bytes exactly as hashed (TOC formats), or of the plain-layer entry JSON. */
  readonly payload: string;
  /**
   * zstd:chunked: base64 of the compressed tar-split exactly as hashed (its digest is in the TOC), so
   * a rebuilt index is bound to the tar's headers by the same check as at resolve time.
   */
  readonly tarSplit?: string;
  /**
   * eStargz: names the TOC writer mangled, as the tar headers hold them ([TOC entry index, base64
   * name, base64 link target?]); re-checked against the TOC on load (estargz/header-names.ts).
   */
  readonly headerNames?: readonly (readonly [number, string, string?])[];
}

export interface OpenedLayer {
  readonly index: LayerIndex;
  readonly record: LayerRecord;
}

/** Signature every format reader module exports as its entry point. */
export type LayerReader = (blob: RandomAccessBlob, options: OpenLayerOptions) => Promise<OpenedLayer>;
/** Signature of a reader's record loader (re-verifies, never touches the blob). */
export type LayerRecordLoader = (record: LayerRecord, limits?: Limits) => LayerIndex;
