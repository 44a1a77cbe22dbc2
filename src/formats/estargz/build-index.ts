/**
 * Verified TOC JSON → LayerIndex and LayerRecord. Shared by the blob readers and the record loader,
 * so an index rebuilt from a persisted record is built by exactly the same code from exactly the
 * same bytes, and therefore has the same inode numbers.
 */
import type { Digest } from '../../core/digest.js';
import { DEFAULT_LIMITS, type Limits } from '../../core/limits.js';
import { encodePayload, PAYLOAD_GZIP } from '../record-payload.js';
import type { LayerRecord, OpenedLayer } from '../layer-reader.js';
import type { LayerFormat, LayerIndex } from '../model.js';
import { compressionOfFormat } from '../detect.js';
import { buildLayerIndex } from '../overlay-view.js';
import type { VerifiedToc } from '../verified-toc.js';
import { ZSTD_FOOTER_FRAME_SIZE } from './footer.js';
import { applyHeaderNames, encodeHeaderNames, type HeaderNames } from './header-names.js';
import { tocToRawEntries } from './raw-entries.js';
import type { TocEntry } from './toc.js';

export type EStargzFormat = Extract<LayerFormat, 'estargz' | 'stargz-legacy' | 'estargz-zstd'>;

export interface EStargzLayout {
  readonly format: EStargzFormat;
  readonly blobSize: number;
  readonly tocOffset: number;
  readonly footerSize: number;
}

export interface EStargzMeta extends EStargzLayout {
  readonly blobDigest?: Digest;
  readonly diffId?: Digest;
  readonly blobName: string;
}

/** End of the payload area: gzip = tocOffset; zstd = start of the TOC's skippable-frame header. */
export function payloadEndOf(l: EStargzLayout): number {
  return l.format === 'estargz-zstd' ? l.tocOffset - 8 : l.tocOffset;
}

/** Sanity of positions (they come from a footer or from a record). Returns a reason or undefined. */
export function layoutProblem(l: EStargzLayout): string | undefined {
  const ok = (v: number): boolean => Number.isSafeInteger(v) && v >= 0;
  if (!ok(l.blobSize) || !ok(l.tocOffset) || !ok(l.footerSize)) return 'positions are not non-negative integers';
  const tail = l.format === 'estargz-zstd' ? ZSTD_FOOTER_FRAME_SIZE : l.footerSize;
  if (l.format === 'estargz-zstd' && l.tocOffset < 8) return `TOC offset ${l.tocOffset} leaves no room for its frame header`;
  if (l.tocOffset >= l.blobSize - tail) return `TOC offset ${l.tocOffset} is not before the footer at ${l.blobSize - tail}`;
  return undefined;
}

/** A verified TOC and its entries (parsed from it, header names applied) → LayerIndex. */
export function indexFromToc(toc: VerifiedToc, entries: readonly TocEntry[], meta: EStargzMeta, limits: Limits = DEFAULT_LIMITS): LayerIndex {
  const raw = tocToRawEntries(
    entries,
    { legacy: meta.format === 'stargz-legacy', payloadEnd: payloadEndOf(meta), blobName: meta.blobName, maxInnerOffset: limits.maxChunkBytes },
  );
  return buildLayerIndex(
    raw,
    {
      format: meta.format,
      compression: compressionOfFormat(meta.format),
      blobSize: meta.blobSize,
      tocDigest: toc.digest,
      ...(meta.blobDigest !== undefined ? { blobDigest: meta.blobDigest } : {}),
      blobName: meta.blobName,
    },
    { hideEstargzArtefacts: true, limits },
  );
}

/** `toc` is the verified TOC (its bytes persisted as is), `entries` its parse, `names` the header names read for it. */
export function openedFromToc(
  toc: VerifiedToc,
  entries: readonly TocEntry[],
  names: HeaderNames,
  meta: EStargzMeta,
  limits: Limits = DEFAULT_LIMITS,
): OpenedLayer {
  const index = indexFromToc(toc, applyHeaderNames(entries, names), meta, limits);
  const headerNames = encodeHeaderNames(names);
  const record: LayerRecord = {
    version: 1,
    format: meta.format,
    blobSize: meta.blobSize,
    ...(meta.blobDigest !== undefined ? { blobDigest: meta.blobDigest } : {}),
    tocDigest: toc.digest,
    // Recorded, not verified: a lazily read layer's diffID cannot be checked without a full pass.
    ...(meta.diffId !== undefined ? { diffId: meta.diffId } : {}),
    params: { tocOffset: meta.tocOffset, footerSize: meta.footerSize, [PAYLOAD_GZIP]: 1 },
    payload: encodePayload(toc.bytes),
    ...(headerNames !== undefined ? { headerNames } : {}),
  };
  return { index, record };
}
