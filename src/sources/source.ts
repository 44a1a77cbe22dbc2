/**
 * The contract between blob sources (registry, distributed filesystem) and the rest of lazy-als.
 *
 * A source answers two questions about an image reference:
 *  1. resolve(): which manifests (all platforms of an index), configs and layer descriptors it has,
 *     every document verified against the digest it was fetched by (a tag-fetched manifest is
 *     hashed and the digest recorded);
 *  2. openBlob(): random access to one layer blob (bytes unverified; formats/ verifies them).
 * A SourceChain tries sources in order (e.g. dfs first, then the registry).
 */
import type { RandomAccessBlob } from '../core/blob.js';
import type { Digest } from '../core/digest.js';
import type { ImageReference } from './reference.js';

export interface Platform {
  readonly os: string;
  readonly architecture: string;
  readonly variant?: string;
}

/** One layer as described by a manifest, plus what its config says about it. */
export interface ResolvedLayer {
  /** Position in manifest.layers (= position in config.rootfs.diff_ids). */
  readonly index: number;
  readonly mediaType: string;
  /** Compressed blob digest (Era A key). */
  readonly digest: Digest;
  readonly size: number;
  readonly annotations: Readonly<Record<string, string>>;
  /** TOC digest from annotations (Era B key): eStargz toc.digest or zstd:chunked manifest-checksum. */
  readonly tocDigest?: Digest;
  /** config.rootfs.diff_ids[index], when the config has it (untrusted for lazy layers). */
  readonly diffId?: Digest;
  readonly urls?: readonly string[];
  /** Why something expected is absent (e.g. both TOC annotations present ⇒ no tocDigest). */
  readonly notes?: readonly string[];
}

export interface ResolvedManifest {
  /** Digest of the exact manifest bytes (verified). */
  readonly digest: Digest;
  readonly mediaType: string;
  readonly platform?: Platform;
  readonly configDigest: Digest;
  readonly layers: readonly ResolvedLayer[];
  /** Raw verified bytes, for persisting (so the store can re-serve after a restart offline). */
  readonly manifestBytes: Buffer;
  readonly configBytes: Buffer;
}

export interface ResolvedImage {
  readonly reference: ImageReference;
  /** Digest of the top-level document (index or manifest) the reference points to. */
  readonly digest: Digest;
  readonly mediaType: string;
  /** For a single manifest: one entry. For an index: every platform manifest that could be fetched. */
  readonly manifests: readonly ResolvedManifest[];
  /** Raw bytes of the top-level index when the reference points to one. */
  readonly indexBytes?: Buffer;
  /** Which source answered (e.g. "registry localhost:5000" or "dfs /mnt/blobs"). */
  readonly sourceName: string;
  /** false when an index was not scanned to the end (stopped at a wanted manifest, or at the entry limit). */
  readonly complete?: boolean;
}

export interface LayerMatch {
  readonly manifest: ResolvedManifest;
  readonly layer: ResolvedLayer;
  /** 'blob': key was the compressed blob digest (podman <= 5.0); 'toc': key was the TOC digest (podman >= 5.1). */
  readonly keyKind: 'blob' | 'toc';
}

/**
 * What resolve() may stop at: for an index, platform manifests are fetched one at a time (the
 * host's platform first) and the scan ends at the first one `want` accepts — or after the source's
 * index-entry limit. The image then lists only the manifests fetched (`complete: false`).
 */
export type ManifestWanted = (m: ResolvedManifest) => boolean;

export interface BlobSource {
  readonly name: string;
  resolve(ref: ImageReference, signal?: AbortSignal, want?: ManifestWanted): Promise<ResolvedImage>;
  /**
   * Random access to a layer (or any) blob of `ref`'s repository. `bound`: the caller serves it under
   * its blob digest without hashing it whole (a lazily read TOC layer looked up by blob digest), so a
   * source whose documents are not the ones podman got (a dfs layout) must first check that the
   * whole blob hashes to `digest`.
   */
  openBlob(ref: ImageReference, digest: Digest, size: number | undefined, signal?: AbortSignal, bound?: boolean): Promise<RandomAccessBlob>;
  close?(): Promise<void>;
}

/** Whether a manifest has a layer with this blob or TOC digest (a ManifestWanted for a store key). */
export function manifestHasKey(m: ResolvedManifest, key: Digest): boolean {
  return m.layers.some((l) => l.digest === key || l.tocDigest === key);
}

/** Find the layer a store key names, across every platform manifest; blob digest or TOC digest. */
export function findLayer(image: ResolvedImage, key: Digest): LayerMatch | undefined {
  for (const manifest of image.manifests) {
    for (const layer of manifest.layers) {
      if (layer.digest === key) return { manifest, layer, keyKind: 'blob' };
    }
  }
  for (const manifest of image.manifests) {
    for (const layer of manifest.layers) {
      if (layer.tocDigest === key) return { manifest, layer, keyKind: 'toc' };
    }
  }
  return undefined;
}
