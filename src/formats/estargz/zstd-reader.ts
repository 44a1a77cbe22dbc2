/**
 * openEStargzZstd: the stargz-snapshotter zstd variant (docs/formats.md §3). The payload area is zstd
 * frames with eStargz frame boundaries; the TOC is a zstd frame inside a skippable frame
 * (`50 2a 4d 18`, u32le length) that ends where the 48-byte footer skippable frame begins. The TOC
 * digest is the sha256 of the *uncompressed* JSON (annotation containerd.io/snapshot/stargz/toc.digest).
 */
import type { RandomAccessBlob } from '../../core/blob.js';
import type { ErrorContext } from '../../core/errors.js';
import { FormatError } from '../errors.js';
import type { OpenLayerOptions, OpenedLayer } from '../layer-reader.js';
import { layoutProblem } from './build-index.js';
import { isSkippableMagic, parseZstdFooter, ZSTD_FOOTER_FRAME_SIZE } from './footer.js';
import { openVerifiedToc, rangeFrom, readTail } from './reader.js';
import { extractTocFromZstdFrame } from './toc-member.js';

export async function openEStargzZstd(blob: RandomAccessBlob, options: OpenLayerOptions): Promise<OpenedLayer> {
  const { tail, expected, blobDigest, limits, ctx } = await readTail(blob, options, ZSTD_FOOTER_FRAME_SIZE);
  const footer = parseZstdFooter(tail.bytes, blob.name);
  if (!footer) throw new FormatError('FOOTER_INVALID', 'no estargz-zstd footer ("GnUlInUx") at the end of the blob', ctx);
  const layout = { format: 'estargz-zstd' as const, blobSize: blob.size, tocOffset: footer.tocOffset, footerSize: footer.footerSize };
  const problem = layoutProblem(layout);
  const tocEnd = footer.tocOffset + footer.tocCompressedSize;
  const fctx: ErrorContext = { ...ctx, range: [footer.tocOffset, tocEnd] };
  if (problem !== undefined) throw new FormatError('TOC_OUT_OF_RANGE', problem, fctx);
  if (tocEnd > blob.size - ZSTD_FOOTER_FRAME_SIZE) {
    throw new FormatError('TOC_OUT_OF_RANGE', `compressed TOC ends at ${tocEnd}, past the footer`, fctx);
  }
  if (footer.tocCompressedSize > limits.maxTocBytes || footer.tocSize > limits.maxTocBytes) {
    throw new FormatError(
      'TOC_TOO_LARGE',
      `TOC of ${footer.tocCompressedSize} compressed / ${footer.tocSize} bytes exceeds the limit of ${limits.maxTocBytes}`,
      fctx,
    );
  }
  // The skippable-frame header in front of the TOC: it is where the payload area ends, so it must
  // really be there (otherwise the last chunk's span would end inside something else).
  const framed = await rangeFrom(blob, tail, footer.tocOffset - 8, 8 + footer.tocCompressedSize, options.signal);
  if (!isSkippableMagic(framed, 0) || framed.readUInt32LE(4) !== footer.tocCompressedSize) {
    throw new FormatError('TOC_OUT_OF_RANGE', 'TOC is not preceded by a skippable frame header of its length', fctx);
  }
  const json = await extractTocFromZstdFrame(framed.subarray(8), footer.tocSize, fctx);
  return openVerifiedToc(json, expected, layout, blob, blobDigest, options, limits, fctx);
}
