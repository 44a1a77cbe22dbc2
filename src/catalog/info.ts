/**
 * The `info` file of a layer directory (als-contract.md §6): a JSON subset of c/storage's Layer
 * record, computed once per served layer and never changed (c/storage reads it twice and persists it).
 *
 * Era B (key = TOC digest, podman ≥ 5.1):
 *   {"toc-digest", "compressed-size", "diff-size": -1, "compression", "uidset", "gidset",
 *    "flags": {"expected-layer-diffid": <config diff_id>}}
 *   No diff-digest / compressed-diff-digest: on the lazy path nothing verified them, and publishing
 *   them would let other images reuse the layer unchecked (als-contract.md §6).
 * Era A (key = blob digest, podman ≤ 5.0):
 *   {"compressed-diff-digest": <blob digest>, "compressed-size", "diff-digest": <diffID>, "diff-size",
 *    "compression", "uidset", "gidset"}
 *   podman 4 derives the layer ID from diff-digest, so it is required: the verified diffID for plain
 *   layers and, with `era_a_toc_layers = "verify"` (default), TOC layers read in one whole pass
 *   (openLayer checked it); only under `trust` the config's diff_id, unchecked (as stargz-store does).
 *   diff-size, best available: the verified uncompressed size (plain layers, or whatever the format
 *   reader verified), else the eStargz annotation io.containers.estargz.uncompressed-size, else -1
 *   ("unknown"; only `podman images` sizes are affected).
 * Both eras need a config diffID; without one the layer is not servable (LAYER_NOT_SERVABLE) and the
 * lookup answers ENOENT, which makes podman pull normally instead of failing on push/save later.
 * Never set: names, uidmap, gidmap, big-data-names, incomplete flags. Key order is fixed, output ends
 * with a newline (like Go's json.Encoder).
 */
import type { Digest } from '../core/digest.js';
import { STORAGE_COMPRESSION, type LayerIndex } from '../formats/model.js';
import { IndexError } from './errors.js';

const ANNOTATION_ESTARGZ_UNCOMPRESSED_SIZE = 'io.containers.estargz.uncompressed-size';

export interface InfoInput {
  readonly key: Digest;
  readonly keyKind: 'blob' | 'toc';
  readonly index: Pick<LayerIndex, 'compression' | 'uids' | 'gids' | 'diffId' | 'uncompressedSize'>;
  readonly blobDigest: Digest;
  readonly blobSize: number;
  /** config.rootfs.diff_ids[i]. */
  readonly diffId?: Digest;
  readonly annotations?: Readonly<Record<string, string>>;
}

export function buildInfo(i: InfoInput): Buffer {
  const ctx = { layer: i.key, blob: i.blobDigest };
  const diffId = i.index.diffId ?? i.diffId;
  if (diffId === undefined) {
    throw new IndexError('LAYER_NOT_SERVABLE', 'the image config has no diff_id for this layer', ctx);
  }
  const compression = STORAGE_COMPRESSION[i.index.compression];
  const uidset = [...i.index.uids];
  const gidset = [...i.index.gids];
  let info: Record<string, unknown>;
  if (i.keyKind === 'toc') {
    info = {
      'toc-digest': i.key,
      'compressed-size': i.blobSize,
      'diff-size': -1,
      compression,
      uidset,
      gidset,
      flags: { 'expected-layer-diffid': diffId },
    };
  } else {
    info = {
      'compressed-diff-digest': i.blobDigest,
      'compressed-size': i.blobSize,
      'diff-digest': diffId,
      'diff-size': eraADiffSize(i),
      compression,
      uidset,
      gidset,
    };
  }
  return Buffer.from(JSON.stringify(info) + '\n', 'utf8');
}

function eraADiffSize(i: InfoInput): number {
  if (i.index.uncompressedSize !== undefined) return i.index.uncompressedSize;
  const a = i.annotations?.[ANNOTATION_ESTARGZ_UNCOMPRESSED_SIZE];
  if (a !== undefined && /^[0-9]{1,15}$/.test(a)) return Number(a);
  return -1;
}
