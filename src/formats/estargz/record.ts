/**
 * loadEStargzRecord: rebuild an eStargz LayerIndex from its persisted LayerRecord, offline. The
 * record's payload is the TOC JSON exactly as verified when the layer was opened; it is verified
 * again here (a record file is just bytes on disk) and then goes through the same code as a fresh
 * open, so inode numbers are identical.
 */
import { isDigest, type Digest } from '../../core/digest.js';
import { DEFAULT_LIMITS, type Limits } from '../../core/limits.js';
import { FormatError } from '../errors.js';
import { decodePayload } from '../record-payload.js';
import type { LayerRecord } from '../layer-reader.js';
import type { LayerIndex } from '../model.js';
import { indexFromToc, layoutProblem, type EStargzFormat } from './build-index.js';
import { applyHeaderNames, decodeHeaderNames } from './header-names.js';
import { ESTARGZ_FOOTER_SIZE, LEGACY_FOOTER_SIZE, ZSTD_FOOTER_SIZE } from './footer.js';
import { VerifiedToc } from '../verified-toc.js';
import { parseToc } from './toc.js';

const FOOTER_SIZES: Readonly<Record<EStargzFormat, number>> = {
  estargz: ESTARGZ_FOOTER_SIZE,
  'stargz-legacy': LEGACY_FOOTER_SIZE,
  'estargz-zstd': ZSTD_FOOTER_SIZE,
};

export function loadEStargzRecord(record: LayerRecord, limits: Limits = DEFAULT_LIMITS): LayerIndex {
  const blobName = typeof record.blobDigest === 'string' ? record.blobDigest : 'layer record';
  const ctx = { blob: blobName };
  if (record.version !== 1) throw new FormatError('TOC_MALFORMED', `record version ${String(record.version)}, want 1`, ctx);
  const format = record.format as EStargzFormat;
  const footerSize = FOOTER_SIZES[format];
  if (footerSize === undefined) throw new FormatError('FORMAT_UNKNOWN', `record format ${String(record.format)} is not eStargz`, ctx);
  if (record.tocDigest === undefined || !isDigest(record.tocDigest)) {
    throw new FormatError('TOC_MISSING', 'record has no valid TOC digest', ctx);
  }
  const tocOffset = record.params?.['tocOffset'];
  const fs = record.params?.['footerSize'];
  const gz = record.params?.['payloadGzip'];
  if (typeof tocOffset !== 'number' || fs !== footerSize || (gz !== undefined && gz !== 1)) {
    throw new FormatError('TOC_MALFORMED', 'record params do not match its format', ctx);
  }
  const layout = { format, blobSize: record.blobSize, tocOffset, footerSize };
  const problem = layoutProblem(layout);
  if (problem !== undefined) throw new FormatError('TOC_OUT_OF_RANGE', problem, ctx);
  const json = decodePayload(record, limits.maxTocBytes, ctx);
  if (json === undefined) throw new FormatError('TOC_MALFORMED', 'record payload is not base64 within the TOC size limit', ctx);
  const toc = VerifiedToc.verify(json, record.tocDigest as Digest, 'TOC', ctx);
  const blobDigest = record.blobDigest !== undefined && isDigest(record.blobDigest) ? record.blobDigest : undefined;
  const entries = parseToc(toc, ctx, limits.maxEntries);
  const names = decodeHeaderNames(record.headerNames, entries, ctx);
  return indexFromToc(toc, applyHeaderNames(entries, names), { ...layout, blobName, ...(blobDigest !== undefined ? { blobDigest } : {}) }, limits);
}
