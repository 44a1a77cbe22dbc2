/**
 * The dispatcher: read a blob's head and tail, decide its format (detect.ts), hand it to the reader
 * for that format; and the matching record loader.
 *
 * A TOC format is read lazily only when its TOC is pinned (options.expectedTocDigest or the
 * descriptor's annotation) or the caller explicitly accepts an unpinned TOC (CLI inspect). Otherwise
 * the blob is read as the plain tar stream it also is (eStargz is a valid tar.gz, zstd:chunked a valid
 * tar.zst): a full pass verifies the blob digest and diffID, so nothing unverified is served. That is
 * what containers/storage does with such a layer when its descriptor has no TOC annotation.
 * `wholePass` asks for that plain reading of a TOC layer even when its TOC is pinned.
 */
import type { RandomAccessBlob } from '../core/blob.js';
import { DEFAULT_LIMITS, type Limits } from '../core/limits.js';
import {
  ANNOTATION_STARGZ_TOC_DIGEST,
  ANNOTATION_ZSTD_CHUNKED_CHECKSUM,
  compressionOfFormat,
  detectFormat,
  DETECT_HEAD_BYTES,
  DETECT_TAIL_BYTES,
  isTocFormat,
} from './detect.js';
import { FormatError } from './errors.js';
import { loadEStargzRecord, openEStargz, openEStargzZstd } from './estargz/index.js';
import type { LayerRecord, OpenedLayer, OpenLayerOptions } from './layer-reader.js';
import type { LayerFormat, LayerIndex } from './model.js';
import { loadPlainRecord, openPlainLayer } from './tar/index.js';
import { loadZstdChunkedRecord, openZstdChunked } from './zstd-chunked/index.js';

const PLAIN_OF = { none: 'tar', gzip: 'tar+gzip', zstd: 'tar+zstd' } as const;

function tocPinned(format: LayerFormat, options: OpenLayerOptions): boolean {
  if (options.expectedTocDigest !== undefined) return true;
  const ann = options.descriptor?.annotations ?? {};
  return format === 'zstd-chunked' ? ann[ANNOTATION_ZSTD_CHUNKED_CHECKSUM] !== undefined : ann[ANNOTATION_STARGZ_TOC_DIGEST] !== undefined;
}

/** Decide the format a blob will be read as (detection + the unpinned-TOC fallback). */
export async function resolveLayerFormat(blob: RandomAccessBlob, options: OpenLayerOptions = {}): Promise<LayerFormat> {
  let format = options.format;
  if (format === undefined) {
    const headLen = Math.min(DETECT_HEAD_BYTES, blob.size);
    const tailLen = Math.min(DETECT_TAIL_BYTES, blob.size);
    const [head, tail] = await Promise.all([
      blob.read(0, headLen, options.signal),
      blob.read(blob.size - tailLen, tailLen, options.signal),
    ]);
    try {
      format = detectFormat(tail, head, options.descriptor).format;
    } catch (e) {
      if (e instanceof FormatError) throw new FormatError(e.code, e.message, { blob: options.descriptor?.digest ?? blob.name });
      throw e;
    }
    if (isTocFormat(format) && (options.wholePass === true || (!tocPinned(format, options) && !options.allowUnpinnedToc))) {
      format = PLAIN_OF[compressionOfFormat(format)];
    }
  }
  if (!isTocFormat(format) && options.expectedTocDigest !== undefined) {
    throw new FormatError('FORMAT_CONFLICT', `a TOC digest is expected but the blob is a plain ${format} layer`, {
      blob: options.descriptor?.digest ?? blob.name,
    });
  }
  return format;
}

export async function openLayer(blob: RandomAccessBlob, options: OpenLayerOptions = {}): Promise<OpenedLayer> {
  const format = await resolveLayerFormat(blob, options);
  const opts: OpenLayerOptions = { ...options, format };
  switch (format) {
    case 'estargz':
    case 'stargz-legacy':
      return openEStargz(blob, opts);
    case 'estargz-zstd':
      return openEStargzZstd(blob, opts);
    case 'zstd-chunked':
      return openZstdChunked(blob, opts);
    case 'tar':
    case 'tar+gzip':
    case 'tar+zstd':
      return openPlainLayer(blob, opts);
  }
}

/** Rebuild a layer's index from its persisted record (never touches the blob). */
export function loadLayerRecord(record: LayerRecord, limits: Limits = DEFAULT_LIMITS): LayerIndex {
  switch (record.format) {
    case 'estargz':
    case 'stargz-legacy':
    case 'estargz-zstd':
      return loadEStargzRecord(record, limits);
    case 'zstd-chunked':
      return loadZstdChunkedRecord(record, limits);
    case 'tar':
    case 'tar+gzip':
    case 'tar+zstd':
      return loadPlainRecord(record, limits);
    default:
      throw new FormatError('TOC_MALFORMED', `unknown layer record format ${JSON.stringify(String((record as { format: unknown }).format))}`);
  }
}
