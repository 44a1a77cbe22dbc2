/**
 * Names a Go-written eStargz TOC mangled, served with the tar header's bytes (docs/formats.md §2.8).
 *
 * Go's encoding/json writes a name holding invalid UTF-8 with U+FFFD per bad byte, so the TOC of a
 * legal non-UTF-8 name is not its name (a 255-byte one even becomes 765 bytes). The tar headers
 * are inline in the blob: each entry's header sits in the uncompressed stream after the previous
 * payload and before its own payload's member. A lookup is answered before any content is read, so
 * the headers are read when the layer is resolved — only the gaps holding an entry whose TOC name or
 * link target contains U+FFFD (nothing at all for a layer without one) — and every header found
 * in such a gap is bound to its TOC entry field by field (toc-binding.ts); a mismatch refuses the
 * layer (FORMAT_CONFLICT).
 *
 * The result is a small map "TOC entry index → header bytes" that the LayerRecord carries, so a
 * rebuilt index serves the same names offline; loading it accepts a name only if the TOC holds
 * its Go mangling (a record cannot rename anything else).
 */
import { readRanges, type RandomAccessBlob } from '../../core/blob.js';
import type { ErrorContext } from '../../core/errors.js';
import type { Limits } from '../../core/limits.js';
import { byteStringOf, displayName, toBuffer } from '../byte-string.js';
import { decodeAtMost } from '../decompress.js';
import { FormatError } from '../errors.js';
import type { ByteString, Compression } from '../model.js';
import { TarScanner, type ScannedEntry } from '../tar/tar-scanner.js';
import { bindEntry, REPLACEMENT_CHAR, sameName, type BoundNames } from '../toc-binding.js';
import { headerAllowance } from './raw-entries.js';
import type { TocEntry } from './toc.js';

/** TOC entry index → the name (and link target) its tar header holds. */
export type HeaderNames = ReadonlyMap<number, BoundNames>;

const BLOCK = 512;

/** Entries whose TOC name or link target may be a Go mangling (holds U+FFFD). */
function suspectEntries(toc: readonly TocEntry[]): number[] {
  const out: number[] = [];
  toc.forEach((e, i) => {
    if (e.type !== 'chunk' && (e.name.includes(REPLACEMENT_CHAR) || (e.linkName?.includes(REPLACEMENT_CHAR) ?? false))) out.push(i);
  });
  return out;
}

/** A payload part: a reg with content (its first chunk) or a chunk entry. */
interface Part {
  readonly index: number;
  readonly offset: number;
  readonly innerOffset: number;
  readonly size: number;
  readonly fileSize: number;
}

function partsOf(toc: readonly TocEntry[]): Part[] {
  const parts: Part[] = [];
  let fileSize = 0;
  toc.forEach((e, index) => {
    if (e.type === 'reg') fileSize = e.size;
    const isPart = (e.type === 'reg' && e.size > 0) || e.type === 'chunk';
    if (!isPart) return;
    const size = e.chunkSize !== 0 ? e.chunkSize : fileSize - e.chunkOffset;
    parts.push({ index, offset: e.offset, innerOffset: e.innerOffset, size, fileSize });
  });
  return parts;
}

export interface HeaderRegionLayout {
  readonly compression: Compression;
  /** Exclusive end of the payload area (where the TOC starts). */
  readonly payloadEnd: number;
}

/**
 * Read and bind the tar headers of the gaps that hold a suspect entry; returns the names to serve
 * where they differ from the TOC's. Empty (and no I/O) when no TOC name holds U+FFFD.
 */
export async function readHeaderNames(
  blob: RandomAccessBlob,
  toc: readonly TocEntry[],
  layout: HeaderRegionLayout,
  limits: Limits,
  ctx: ErrorContext,
  signal?: AbortSignal,
): Promise<HeaderNames> {
  const suspects = suspectEntries(toc);
  if (suspects.length === 0) return new Map();
  const parts = partsOf(toc);
  const offsets = [...new Set(parts.map((p) => p.offset))].sort((a, b) => a - b);
  /** Gaps by the index of the payload part before them (-1: the start of the blob). */
  const gaps = new Map<number, { prev: Part | undefined; first: number; last: number }>();
  let pi = 0;
  for (const s of suspects) {
    while (pi < parts.length && parts[pi]!.index < s) pi++;
    const prev = pi > 0 ? parts[pi - 1] : undefined;
    // The gap's entries: after the previous payload, up to and including the next file with a
    // payload (its header precedes the payload's member), or to the end of the TOC.
    const next = parts[pi];
    const key = prev?.index ?? -1;
    if (!gaps.has(key)) gaps.set(key, { prev, first: key + 1, last: next !== undefined ? next.index : toc.length - 1 });
  }
  const regions = [...gaps.values()].map((g) => {
    const start = g.prev?.offset ?? 0;
    const after = offsets.find((o) => o > start);
    const end = Math.min(after ?? layout.payloadEnd, layout.payloadEnd);
    const skip = g.prev ? g.prev.innerOffset + g.prev.size + padOf(g.prev.fileSize) : 0;
    let allowance = 0;
    for (let i = g.first; i <= g.last; i++) allowance += headerAllowance(toc[i]!);
    const rctx = { ...ctx, range: [start, end] as [number, number] };
    if (end <= start || end - start > limits.maxCompressedSpanBytes || skip > limits.maxChunkBytes + 2 * BLOCK) {
      throw new FormatError('CHUNK_INVALID', `tar headers of TOC entries ${g.first}-${g.last} lie outside any readable region`, rctx);
    }
    return { ...g, start, end, skip, max: skip + allowance, rctx };
  });
  const bufs = await readRanges(blob, regions.map((r) => ({ offset: r.start, length: r.end - r.start })), signal);
  const out = new Map<number, BoundNames>();
  for (const [ri, r] of regions.entries()) {
    const plain = await decodeAtMost(layout.compression, bufs[ri]!, r.max, r.rctx);
    if (plain.length < r.skip) throw new FormatError('FORMAT_CONFLICT', `no tar header after the payload ending at ${r.skip}`, r.rctx);
    const headers = scanHeaders(plain.subarray(r.skip), r.last - r.first + 1, limits, r.rctx);
    for (let i = r.first, k = 0; i <= r.last; i++, k++) {
      const e = toc[i]!;
      const h = headers[k];
      if (!h) throw new FormatError(
        'FORMAT_CONFLICT',
        'TOC lists an entry whose tar header is not where it must be',
        { ...r.rctx, entry: displayName(e.name) },
      );
      const bound = bindEntry(e, h, r.rctx, { tocSeconds: true });
      if (bound.name !== e.name || (bound.linkName !== undefined && bound.linkName !== e.linkName)) out.set(i, bound);
    }
  }
  return out;
}

/** The first `count` entries of a tar fragment that starts at a header (content is not expected). */
function scanHeaders(fragment: Buffer, count: number, limits: Limits, ctx: ErrorContext): ScannedEntry[] {
  const scanner = new TarScanner(limits, typeof ctx.blob === 'string' ? ctx.blob : undefined);
  const out: ScannedEntry[] = [];
  for (const ev of scanner.push(fragment)) {
    if (ev.kind === 'entry') out.push(ev.entry);
    if (out.length === count || ev.kind === 'end') break;
  }
  return out;
}

function padOf(n: number): number {
  const r = n % BLOCK;
  return r === 0 ? 0 : BLOCK - r;
}

/** HeaderNames as a LayerRecord carries them: [TOC index, base64 name, base64 link target?]. */
export type HeaderNamesRecord = readonly (readonly [number, string, string?])[];

export function encodeHeaderNames(names: HeaderNames): HeaderNamesRecord | undefined {
  if (names.size === 0) return undefined;
  const b64 = (s: ByteString): string => toBuffer(s).toString('base64');
  return [...names].map(([i, b]) => (b.linkName !== undefined ? [i, b64(b.name), b64(b.linkName)] : [i, b64(b.name)]));
}

/**
 * HeaderNames from a record, re-checked against the (verified) TOC: each name must be one whose Go
 * mangling the TOC holds, so a record on disk can only restore the bytes the TOC writer lost.
 */
export function decodeHeaderNames(rec: unknown, toc: readonly TocEntry[], ctx: ErrorContext): HeaderNames {
  const out = new Map<number, BoundNames>();
  if (rec === undefined) return out;
  const bad = (): never => {
    throw new FormatError('TOC_MALFORMED', 'record header names do not belong to this TOC', ctx);
  };
  if (!Array.isArray(rec)) return bad();
  for (const item of rec as unknown[]) {
    if (!Array.isArray(item) || item.length < 2 || item.length > 3) bad();
    const [i, n, l] = item as [unknown, unknown, unknown];
    const e = typeof i === 'number' ? toc[i] : undefined;
    if (!e || e.type === 'chunk' || typeof n !== 'string' || (l !== undefined && typeof l !== 'string')) return bad();
    const name = byteStringOf(Buffer.from(n, 'base64'));
    if (sameName(e.name, name, true) !== name) bad();
    let linkName: ByteString | undefined;
    if (typeof l === 'string') {
      linkName = byteStringOf(Buffer.from(l, 'base64'));
      if (e.linkName === undefined || sameName(e.linkName, linkName, e.type === 'hardlink') !== linkName) bad();
    }
    out.set(i as number, { name, ...(linkName !== undefined ? { linkName } : {}) });
  }
  return out;
}

/** The TOC with the header names applied (chunk entries follow their file's name). */
export function applyHeaderNames(toc: readonly TocEntry[], names: HeaderNames): readonly TocEntry[] {
  if (names.size === 0) return toc;
  let fileName: ByteString | undefined;
  return toc.map((e, i) => {
    if (e.type === 'chunk') return fileName !== undefined ? { ...e, name: fileName } : e;
    const b = names.get(i);
    fileName = e.type === 'reg' && b ? b.name : undefined;
    return b ? { ...e, name: b.name, ...(b.linkName !== undefined ? { linkName: b.linkName } : {}) } : e;
  });
}
