/**
 * Where a TOC layer's open will read, as far as its descriptor tells before any byte is fetched:
 * the head (format detection) and the tail holding the footer and the TOC. The caller fetches these
 * ranges in ONE request and serves the open's reads from them (core/prefetched-blob.ts), instead of
 * one round trip each for the head and tail, the footer, then the TOC and tar-split.
 *
 *  - zstd:chunked with its position annotations: exactly from the first metadata frame (tar-split
 *    or manifest, each behind an 8-byte skippable-frame header) to the end of the blob;
 *  - any other TOC layer (eStargz, whose TOC position only its footer knows): the speculative tail
 *    the eStargz reader reads anyway (TAIL_READ_BYTES: the footer and, for most layers, the whole
 *    TOC; a larger TOC costs the one extra round trip it cost before).
 *
 * Hints are only hints: the bytes stay unverified, and a lying annotation changes only what is
 * fetched up front (the reader checks the annotations against the footer, and the TOC against its
 * digest, as before). Plain layers get none: they are read whole anyway.
 */
import type { ByteRange } from '../core/blob.js';
import type { Limits } from '../core/limits.js';
import { DETECT_HEAD_BYTES, DETECT_TAIL_BYTES } from './detect.js';
import { STARGZ_TOC_DIGEST_ANNOTATION, ZSTD_CHUNKED_TOC_DIGEST_ANNOTATION } from './constants.js';
import { TAIL_READ_BYTES } from './estargz/reader.js';
import { ANN_MANIFEST_POSITION, ANN_TARSPLIT_POSITION } from './zstd-chunked/footer.js';

/** Skippable-frame header in front of zstd:chunked's manifest and tar-split. */
const FRAME_HEADER = 8;

export interface HintDescriptor {
  readonly size: number;
  readonly annotations: Readonly<Record<string, string>>;
}

export function tocReadHints(d: HintDescriptor, limits: Pick<Limits, 'maxTocBytes'>): ByteRange[] {
  const ann = d.annotations;
  if (ann[ZSTD_CHUNKED_TOC_DIGEST_ANNOTATION] === undefined && ann[STARGZ_TOC_DIGEST_ANNOTATION] === undefined) return [];
  const size = d.size;
  const head = { offset: 0, length: Math.min(DETECT_HEAD_BYTES, size) };
  let tailStart = size - Math.min(size, TAIL_READ_BYTES);
  const starts = [ann[ANN_MANIFEST_POSITION], ann[ANN_TARSPLIT_POSITION]].map(frameStart).filter((n): n is number => n !== undefined);
  if (starts.length > 0) tailStart = Math.min(size - Math.min(size, DETECT_TAIL_BYTES), ...starts);
  // a position that is out of range or absurdly large is the reader's to refuse; fetch only the footer
  if (tailStart < 0 || size - tailStart > 2 * limits.maxTocBytes + 1024 * 1024) tailStart = size - Math.min(size, DETECT_TAIL_BYTES);
  if (tailStart <= head.length) return [{ offset: 0, length: size }];
  return [head, { offset: tailStart, length: size - tailStart }];
}

/** Offset of the skippable frame whose payload a `<offset>:<length>:…` position names, if well-formed. */
function frameStart(position: string | undefined): number | undefined {
  const m = position === undefined ? null : /^(\d{1,15}):\d{1,15}(:\d{1,15}){1,2}$/.exec(position);
  if (!m) return undefined;
  const off = Number(m[1]);
  return off >= FRAME_HEADER ? off - FRAME_HEADER : undefined;
}
