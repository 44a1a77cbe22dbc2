/**
 * zstd:chunked reader (containers/storage, docs/formats.md §4): locate the TOC, authenticate it, parse it
 * into the shared layer model, and persist it as a LayerRecord.
 *
 * Order matters for safety: position (annotation and/or footer, which must agree) → size limits →
 * range checks → fetch the compressed TOC → sha256 of the COMPRESSED bytes against the pinned TOC
 * digest → only then decompress (bounded to the announced length) and parse. The tar-split, when
 * the TOC names its digest, is authenticated the same way and must list the same entries as the TOC
 * (else the layer would look different to us than to a full pull). File content is never read here:
 * chunk-reader.ts verifies every chunk against the digests this TOC provides.
 */
import { readRanges, type RandomAccessBlob } from '../../core/blob.js';
import { DigestHasher, parseDigest, type Digest } from '../../core/digest.js';
import type { ErrorContext } from '../../core/errors.js';
import { DEFAULT_LIMITS, type Limits } from '../../core/limits.js';
import { decodeBase64Strict } from '../../core/base64.js';
import { FormatError } from '../errors.js';
import type { LayerReader, LayerRecord, LayerRecordLoader, OpenLayerOptions } from '../layer-reader.js';
import type { LayerIndex } from '../model.js';
import { buildLayerIndex, type LayerMeta } from '../overlay-view.js';
import { decodeZstdExact } from '../decompress.js';
import {
  ANN_ESTARGZ_TOC_DIGEST,
  ANN_MANIFEST_CHECKSUM,
  ANN_MANIFEST_POSITION,
  ANN_OLD_MANIFEST_CHECKSUM,
  ANN_OLD_MANIFEST_POSITION,
  ANN_TARSPLIT_POSITION,
  FOOTER_SIZE,
  formatPosition,
  parseFooter,
  parseManifestPosition,
  parseOldFooter,
  parseTarSplitPosition,
  samePosition,
  SKIPPABLE_MAGIC,
  type Position,
} from './footer.js';
import { VerifiedToc } from '../verified-toc.js';
import { parseTocManifest, type TocManifest } from './manifest.js';
import { tocToRawEntries } from './raw-entries.js';
import { bindTocToTar, parseTarSplit } from './tar-split.js';

/** Skippable-frame header in front of the manifest and the tar-split. */
const FRAME_HEADER = 8;

interface Located {
  readonly variant: 'current' | 'old';
  readonly manifest: Position;
  readonly tarSplit?: Position;
}

function annotatedDigest(value: string | undefined, key: string, ctx: ErrorContext): Digest | undefined {
  if (value === undefined) return undefined;
  try {
    return parseDigest(value, key, ctx);
  } catch (e) {
    throw new FormatError('TOC_MALFORMED', `annotation ${key} is not a digest`, ctx, { cause: e });
  }
}

async function locate(
  blob: RandomAccessBlob,
  ann: Readonly<Record<string, string>>,
  limits: Limits,
  ctx: ErrorContext,
  signal?: AbortSignal,
): Promise<Located> {
  const hasCurrent = ANN_MANIFEST_CHECKSUM in ann || ANN_MANIFEST_POSITION in ann || ANN_TARSPLIT_POSITION in ann;
  if (ANN_ESTARGZ_TOC_DIGEST in ann) {
    // containers/storage refuses both; with only the old keys it is stargz-snapshotter's zstd variant.
    throw new FormatError(
      'FORMAT_CONFLICT',
      hasCurrent ? 'both zstd:chunked and eStargz TOC annotations' : 'layer carries an eStargz TOC digest: not zstd:chunked',
      ctx,
    );
  }
  const variant = !hasCurrent && ANN_OLD_MANIFEST_CHECKSUM in ann ? 'old' : 'current';
  const tailLen = Math.min(blob.size, FOOTER_SIZE + FRAME_HEADER);
  const tail = await blob.read(blob.size - tailLen, tailLen, signal);
  const footer = variant === 'current' ? parseFooter(tail, ctx) : parseOldFooter(tail, ctx);
  const posAnn = ann[variant === 'current' ? ANN_MANIFEST_POSITION : ANN_OLD_MANIFEST_POSITION];
  const annManifest = posAnn !== undefined ? parseManifestPosition(posAnn, ctx) : undefined;
  const tsAnn = variant === 'current' ? ann[ANN_TARSPLIT_POSITION] : undefined;
  const annTarSplit = tsAnn !== undefined ? parseTarSplitPosition(tsAnn, ctx) : undefined;
  if (footer && annManifest && !samePosition(footer.manifest, annManifest)) {
    throw new FormatError(
      'FORMAT_CONFLICT',
      `manifest position ${formatPosition(annManifest)} (annotation) ≠ ${formatPosition(footer.manifest)} (footer)`,
      ctx,
    );
  }
  if (footer && annTarSplit && !samePosition(footer.tarSplit, annTarSplit)) {
    throw new FormatError('FORMAT_CONFLICT', `tar-split position ${formatPosition(annTarSplit)} (annotation) disagrees with the footer`, ctx);
  }
  const manifest = annManifest ?? footer?.manifest;
  if (!manifest) throw new FormatError('FOOTER_INVALID', 'no manifest-position annotation and no zstd:chunked footer', ctx);
  const tarSplit = annTarSplit ?? footer?.tarSplit;
  const metaEnd = blob.size - (footer?.frameBytes ?? 0);
  checkRegion(manifest, 'manifest', metaEnd, limits, ctx);
  if (tarSplit) {
    checkRegion(tarSplit, 'tar-split', metaEnd, limits, ctx);
    const overlap = tarSplit.offset - FRAME_HEADER < manifest.offset + manifest.length && manifest.offset - FRAME_HEADER < tarSplit.offset + tarSplit.length;
    if (overlap) throw new FormatError('TOC_OUT_OF_RANGE', 'tar-split overlaps the manifest', ctx);
  }
  return { variant, manifest, ...(tarSplit ? { tarSplit } : {}) };
}

function checkRegion(p: Position, what: string, metaEnd: number, limits: Limits, ctx: ErrorContext): void {
  if (p.length > limits.maxTocBytes || p.uncompressedLength > limits.maxTocBytes) {
    throw new FormatError(
      'TOC_TOO_LARGE',
      `${what} of ${p.length} (${p.uncompressedLength} uncompressed) bytes exceeds the limit of ${limits.maxTocBytes}`,
      ctx,
    );
  }
  if (p.length === 0 || p.offset < FRAME_HEADER || p.offset + p.length > metaEnd) {
    throw new FormatError('TOC_OUT_OF_RANGE', `${what} at ${p.offset}+${p.length} is outside the blob's metadata area (0-${metaEnd})`, {
      ...ctx,
      range: [p.offset, p.offset + p.length],
    });
  }
}

/** Split "skippable header + payload" and check the header announces exactly this payload. */
function framed(buf: Buffer, p: Position, what: string, ctx: ErrorContext): Buffer {
  const h = buf.subarray(0, FRAME_HEADER);
  const magicOk = (h[0]! & 0xf0) === 0x50 && h.subarray(1, 4).equals(SKIPPABLE_MAGIC.subarray(1, 4));
  if (!magicOk || h.readUInt32LE(4) !== p.length) {
    throw new FormatError('TOC_OUT_OF_RANGE', `${what} position does not point at a skippable frame of ${p.length} bytes`, {
      ...ctx,
      range: [p.offset - FRAME_HEADER, p.offset + p.length],
    });
  }
  return buf.subarray(FRAME_HEADER);
}

function metaOf(blobSize: number, toc: VerifiedToc, blobName: string, blobDigest?: Digest, uncompressedSize?: number): LayerMeta {
  return {
    format: 'zstd-chunked',
    compression: 'zstd',
    blobSize,
    tocDigest: toc.digest,
    blobName,
    ...(blobDigest !== undefined ? { blobDigest } : {}),
    ...(uncompressedSize !== undefined ? { uncompressedSize } : {}),
  };
}

/** The manifest of a verified TOC: decompressed to exactly its recorded length, then parsed. */
function manifestOf(toc: VerifiedToc, uncompressedLength: number, limits: Limits, ctx: ErrorContext): TocManifest {
  return parseTocManifest(decodeZstdExact(toc.bytes, uncompressedLength, 'zstd:chunked manifest', ctx), limits, ctx);
}

/** A verified TOC and its manifest (parsed from it, bound to the tar-split) → LayerIndex. */
function indexOf(
  toc: VerifiedToc,
  manifest: TocManifest,
  manifestOffset: number,
  layer: { blobSize: number; blobName: string; blobDigest: Digest | undefined; uncompressedSize: number | undefined },
  limits: Limits,
  ctx: ErrorContext,
): LayerIndex {
  const raw = tocToRawEntries(manifest.entries, { dataEnd: manifestOffset - FRAME_HEADER, blobCtx: ctx });
  const meta = metaOf(layer.blobSize, toc, layer.blobName, layer.blobDigest, layer.uncompressedSize);
  return buildLayerIndex(raw, meta, { hideEstargzArtefacts: false, limits });
}

/**
 * The TOC with the tar's real name bytes where the TOC writer mangled them (see
 * checkTarSplitMatchesToc); hardlink targets naming a renamed entry follow it.
 */
/**
 * Authenticate the tar-split against the TOC's digest of it, then bind the TOC to the tar it
 * describes (tar-split.ts): the TOC to serve (with the tar's name bytes) and the tar's length.
 */
function bindTarSplit(
  toc: TocManifest,
  compressed: Buffer,
  uncompressedLength: number,
  limits: Limits,
  ctx: ErrorContext,
): { toc: TocManifest; tarSize: number } {
  const actual = DigestHasher.for(toc.tarSplitDigest!).update(compressed).digest();
  if (actual !== toc.tarSplitDigest) {
    throw new FormatError('TOC_DIGEST_MISMATCH', `tar-split hashes to ${actual}, the TOC says ${toc.tarSplitDigest}`, ctx);
  }
  const ts = parseTarSplit(decodeZstdExact(compressed, uncompressedLength, 'tar-split', ctx), ctx, limits);
  return { toc: { ...toc, entries: bindTocToTar(ts, toc.entries, ctx) }, tarSize: ts.tarSize };
}

export const openZstdChunked: LayerReader = async (blob: RandomAccessBlob, options: OpenLayerOptions) => {
  const limits = options.limits ?? DEFAULT_LIMITS;
  const ann = options.descriptor?.annotations ?? {};
  const ctx: ErrorContext = { blob: blob.name };
  const descSize = options.descriptor?.size;
  if (descSize !== undefined && descSize !== blob.size) {
    throw new FormatError('FORMAT_CONFLICT', `descriptor size ${descSize} ≠ blob size ${blob.size}`, ctx);
  }
  const blobDigest = options.descriptor?.digest;
  const loc = await locate(blob, ann, limits, ctx, options.signal);

  const checksumKey = loc.variant === 'current' ? ANN_MANIFEST_CHECKSUM : ANN_OLD_MANIFEST_CHECKSUM;
  const annDigest = annotatedDigest(ann[checksumKey], checksumKey, ctx);
  if (options.expectedTocDigest !== undefined && annDigest !== undefined && options.expectedTocDigest !== annDigest) {
    throw new FormatError('FORMAT_CONFLICT', `expected TOC digest ${options.expectedTocDigest} ≠ annotated ${annDigest}`, ctx);
  }
  const expected = options.expectedTocDigest ?? annDigest;
  if (expected === undefined && !options.allowUnpinnedToc) {
    throw new FormatError('TOC_MISSING', 'no TOC digest to verify the zstd:chunked manifest against', ctx);
  }

  const ranges = [{ offset: loc.manifest.offset - FRAME_HEADER, length: loc.manifest.length + FRAME_HEADER }];
  if (loc.tarSplit) ranges.push({ offset: loc.tarSplit.offset - FRAME_HEADER, length: loc.tarSplit.length + FRAME_HEADER });
  const [mBuf, tsBuf] = await readRanges(blob, ranges, options.signal);
  const compressed = framed(mBuf!, loc.manifest, 'manifest', ctx);
  // Authenticate before a single byte is decompressed.
  const verified = VerifiedToc.verify(compressed, expected, 'zstd:chunked manifest', ctx);
  const tocDigest = verified.digest;
  const toc = manifestOf(verified, loc.manifest.uncompressedLength, limits, ctx);

  let uncompressedSize: number | undefined;
  let bound = toc;
  let tarSplit: { compressed: Buffer; uncompressedLength: number } | undefined;
  if (toc.tarSplitDigest !== undefined) {
    if (!loc.tarSplit || !tsBuf) throw new FormatError('FORMAT_CONFLICT', 'TOC names a tar-split digest but the layer has no tar-split position', ctx);
    const tsCompressed = framed(tsBuf, loc.tarSplit, 'tar-split', ctx);
    ({ toc: bound, tarSize: uncompressedSize } = bindTarSplit(toc, tsCompressed, loc.tarSplit.uncompressedLength, limits, ctx));
    tarSplit = { compressed: tsCompressed, uncompressedLength: loc.tarSplit.uncompressedLength };
  }

  const index = indexOf(verified, bound, loc.manifest.offset, { blobSize: blob.size, blobName: blob.name, blobDigest, uncompressedSize }, limits, ctx);
  const record: LayerRecord = {
    version: 1,
    format: 'zstd-chunked',
    blobSize: blob.size,
    ...(blobDigest !== undefined ? { blobDigest } : {}),
    tocDigest,
    // Recorded as the descriptor's claim only: a lazily read layer's diffID is never verified.
    ...(options.diffId !== undefined ? { diffId: options.diffId } : {}),
    ...(uncompressedSize !== undefined ? { uncompressedSize } : {}),
    params: {
      manifestOffset: loc.manifest.offset,
      manifestLength: loc.manifest.length,
      manifestUncompressedLength: loc.manifest.uncompressedLength,
      ...(tarSplit ? { tarSplitUncompressedLength: tarSplit.uncompressedLength } : {}),
    },
    payload: compressed.toString('base64'),
    ...(tarSplit ? { tarSplit: tarSplit.compressed.toString('base64') } : {}),
  };
  return { index, record };
};

/** Rebuild the index from a record: re-verifies the TOC digest, never touches the blob. */
export const loadZstdChunkedRecord: LayerRecordLoader = (record: LayerRecord, limits: Limits = DEFAULT_LIMITS): LayerIndex => {
  const name = record.blobDigest ?? 'layer record';
  const ctx: ErrorContext = { blob: name };
  if (record.version !== 1 || record.format !== 'zstd-chunked') {
    throw new FormatError('FORMAT_CONFLICT', `record is ${String(record.format)} v${String(record.version)}, not zstd-chunked v1`, ctx);
  }
  const p = record.params;
  const manifest: Position = {
    offset: p['manifestOffset'] ?? -1,
    length: p['manifestLength'] ?? -1,
    uncompressedLength: p['manifestUncompressedLength'] ?? -1,
  };
  const ints = [manifest.offset, manifest.length, manifest.uncompressedLength, record.blobSize];
  if (!ints.every((v) => Number.isSafeInteger(v) && v >= 0)) throw new FormatError('TOC_MALFORMED', 'record params are not byte counts', ctx);
  checkRegion(manifest, 'manifest', record.blobSize, limits, ctx);
  const tocDigest = annotatedDigest(record.tocDigest, 'record tocDigest', ctx);
  if (tocDigest === undefined) throw new FormatError('TOC_MISSING', 'record has no TOC digest', ctx);
  const blobDigest = annotatedDigest(record.blobDigest, 'record blobDigest', ctx);
  const compressed = typeof record.payload === 'string' ? decodeBase64Strict(record.payload) : undefined;
  if (!compressed || compressed.length !== manifest.length) {
    throw new FormatError('TOC_MALFORMED', 'record payload is not the base64 of a manifest of the recorded length', ctx);
  }
  const verified = VerifiedToc.verify(compressed, tocDigest, 'record manifest', ctx);
  const us = record.uncompressedSize;
  if (us !== undefined && !(Number.isSafeInteger(us) && us >= 0)) throw new FormatError('TOC_MALFORMED', 'record uncompressedSize is not a byte count', ctx);
  const toc = manifestOf(verified, manifest.uncompressedLength, limits, ctx);
  let bound = toc;
  if (toc.tarSplitDigest !== undefined && record.tarSplit !== undefined) {
    const ts = typeof record.tarSplit === 'string' ? decodeBase64Strict(record.tarSplit) : undefined;
    const tsLen = p['tarSplitUncompressedLength'];
    if (!ts || tsLen === undefined || !Number.isSafeInteger(tsLen) || tsLen < 0 || tsLen > limits.maxTocBytes) {
      throw new FormatError('TOC_MALFORMED', 'record tar-split is not base64 of a tar-split of a recorded length', ctx);
    }
    ({ toc: bound } = bindTarSplit(toc, ts, tsLen, limits, ctx));
  }
  return indexOf(verified, bound, manifest.offset, { blobSize: record.blobSize, blobName: name, blobDigest, uncompressedSize: us }, limits, ctx);
};
