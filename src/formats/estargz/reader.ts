/**
 * openEStargz: gzip eStargz (51-byte footer) and legacy stargz (47-byte footer), docs/formats.md §2.
 *
 * One read of the blob's tail usually brings both the footer and the TOC member; otherwise the TOC
 * member is fetched with a second read. The TOC JSON is hashed and compared with the pinned TOC
 * digest before it is parsed; from then on content is only read through readVerifiedChunks.
 */
import type { RandomAccessBlob } from '../../core/blob.js';
import { isDigest, type Digest } from '../../core/digest.js';
import type { ErrorContext } from '../../core/errors.js';
import { DEFAULT_LIMITS, type Limits } from '../../core/limits.js';
import { compressionOfFormat } from '../detect.js';
import { FormatError } from '../errors.js';
import type { OpenLayerOptions, OpenedLayer } from '../layer-reader.js';
import { layoutProblem, openedFromToc, payloadEndOf, type EStargzFormat, type EStargzLayout } from './build-index.js';
import { readHeaderNames } from './header-names.js';
import { LEGACY_FOOTER_SIZE, parseEStargzFooter, parseLegacyFooter, type GzipFooter } from './footer.js';
import { VerifiedToc } from '../verified-toc.js';
import { expectedTocDigest, extractTocFromGzipMember } from './toc-member.js';
import { parseToc } from './toc.js';

/** How much of the tail to fetch in the first read: footer plus, usually, the whole TOC. */
export const TAIL_READ_BYTES = 512 * 1024;

export interface Tail {
  readonly start: number;
  readonly bytes: Buffer;
}

/** Common preamble: size sanity against the descriptor, the pinned digest, and the tail read. */
export async function readTail(
  blob: RandomAccessBlob,
  options: OpenLayerOptions,
  minSize: number,
): Promise<{ tail: Tail; expected: Digest | undefined; blobDigest: Digest | undefined; limits: Limits; ctx: ErrorContext }> {
  const ctx: ErrorContext = { blob: blob.name };
  const limits = options.limits ?? DEFAULT_LIMITS;
  const d = options.descriptor;
  if (d?.size !== undefined && d.size !== blob.size) {
    throw new FormatError('FORMAT_CONFLICT', `descriptor says ${d.size} bytes, blob has ${blob.size}`, ctx);
  }
  const blobDigest = d?.digest !== undefined && isDigest(d.digest) ? d.digest : undefined;
  const expected = expectedTocDigest(options, ctx);
  if (blob.size < minSize) {
    throw new FormatError('FOOTER_TRUNCATED', `blob of ${blob.size} bytes is too small for a footer`, ctx);
  }
  const len = Math.min(blob.size, TAIL_READ_BYTES);
  const start = blob.size - len;
  const bytes = await blob.read(start, len, options.signal);
  return { tail: { start, bytes }, expected, blobDigest, limits, ctx };
}

/** Bytes [offset, offset+length) from the tail if it covers them, else from the blob. */
export async function rangeFrom(blob: RandomAccessBlob, tail: Tail, offset: number, length: number, signal?: AbortSignal): Promise<Buffer> {
  if (offset >= tail.start) return tail.bytes.subarray(offset - tail.start, offset - tail.start + length);
  return blob.read(offset, length, signal);
}

function detectGzipFooter(tail: Buffer, forced: OpenLayerOptions['format'], name: string): GzipFooter {
  const tries: ((t: Buffer, n: string) => GzipFooter | undefined)[] =
    forced === 'estargz' ? [parseEStargzFooter] : forced === 'stargz-legacy' ? [parseLegacyFooter] : [parseEStargzFooter, parseLegacyFooter];
  for (const t of tries) {
    const f = t(tail, name);
    if (f) return f;
  }
  throw new FormatError('FOOTER_INVALID', 'no eStargz or legacy stargz footer at the end of the blob', { blob: name });
}

export async function openEStargz(blob: RandomAccessBlob, options: OpenLayerOptions): Promise<OpenedLayer> {
  const { tail, expected, blobDigest, limits, ctx } = await readTail(blob, options, LEGACY_FOOTER_SIZE);
  const footer = detectGzipFooter(tail.bytes, options.format, blob.name);
  const format: EStargzFormat = footer.kind;
  const layout = { format, blobSize: blob.size, tocOffset: footer.tocOffset, footerSize: footer.footerSize };
  const problem = layoutProblem(layout);
  if (problem !== undefined) throw new FormatError('TOC_OUT_OF_RANGE', problem, { ...ctx, range: [footer.tocOffset, blob.size] });
  const memberLen = blob.size - footer.footerSize - footer.tocOffset;
  const mctx: ErrorContext = { ...ctx, range: [footer.tocOffset, footer.tocOffset + memberLen] };
  if (memberLen > limits.maxTocBytes) {
    throw new FormatError('TOC_TOO_LARGE', `TOC member of ${memberLen} bytes exceeds the limit of ${limits.maxTocBytes}`, mctx);
  }
  const member = await rangeFrom(blob, tail, footer.tocOffset, memberLen, options.signal);
  const json = await extractTocFromGzipMember(member, limits, mctx);
  return openVerifiedToc(json, expected, layout, blob, blobDigest, options, limits, mctx);
}

/**
 * The step both readers end with: the TOC bytes must hash to the pinned digest before anything is
 * parsed; then the tar headers of TOC names a Go writer mangled are read from the blob (none for
 * most layers: header-names.ts).
 */
export async function openVerifiedToc(
  json: Buffer,
  expected: Digest | undefined,
  layout: EStargzLayout,
  blob: RandomAccessBlob,
  blobDigest: Digest | undefined,
  options: OpenLayerOptions,
  limits: Limits,
  ctx: ErrorContext,
): Promise<OpenedLayer> {
  const toc = VerifiedToc.verify(json, expected, 'TOC', ctx);
  const entries = parseToc(toc, { blob: blob.name }, limits.maxEntries);
  const compression = compressionOfFormat(layout.format);
  const names = await readHeaderNames(blob, entries, { compression, payloadEnd: payloadEndOf(layout) }, limits, { blob: blob.name }, options.signal);
  return openedFromToc(
    toc,
    entries,
    names,
    {
      ...layout,
      blobName: blob.name,
      ...(blobDigest !== undefined ? { blobDigest } : {}),
      ...(options.diffId !== undefined ? { diffId: options.diffId } : {}),
    },
    limits,
  );
}
