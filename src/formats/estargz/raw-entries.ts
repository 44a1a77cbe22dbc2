/**
 * Verified TOC entries → RawEntry[] with ChunkRefs (docs/formats.md §2.6, §2.9, §2.10).
 *
 * A regular file's content is the `reg` entry (chunk #0) plus the `chunk` entries right after it.
 * Each chunk's compressed span starts at its `offset` (a gzip member / zstd frame boundary) and ends
 * at the next larger offset of any data entry, or at the end of the payload area: the next data
 * entry's offset is where the writer began a new member, so nothing our chunk needs lies beyond it.
 * With `innerOffset` several chunks share a member; they decode from the same start and are sliced.
 *
 * The verification unit is the chunk's `chunkDigest`. Legacy stargz has none: there a file is one
 * unit spanning all its chunks, verified against the file `digest`.
 *
 * Everything here is defensive: the TOC has already been verified against its digest, but a TOC can
 * still be produced by a hostile builder, so every offset and size is range-checked and every
 * problem is a FormatError naming the entry.
 */
import type { ErrorContext } from '../../core/errors.js';
import { FormatError } from '../errors.js';
import type { ChunkRef, RawEntry, RawEntryType } from '../model.js';
import type { TocEntry } from './toc.js';

export interface SpanContext {
  /** Legacy stargz: no chunk digests, whole-file verification. */
  readonly legacy: boolean;
  /** Exclusive end of the payload area (gzip: tocOffset; zstd: tocOffset − 8). */
  readonly payloadEnd: number;
  /** Largest innerOffset accepted: bounds the bytes one read decodes before its chunk (Limits.maxChunkBytes). */
  readonly maxInnerOffset?: number;
  readonly blobName: string;
}

interface FileGroup {
  readonly reg: TocEntry;
  readonly parts: TocEntry[];
}

/** A data part with its resolved uncompressed size. */
interface Part {
  readonly e: TocEntry;
  readonly fileOffset: number;
  readonly size: number;
  readonly path: string;
}

export function tocToRawEntries(toc: readonly TocEntry[], sc: SpanContext): Iterable<RawEntry> {
  const bctx: ErrorContext = { blob: sc.blobName };
  // 1. Group chunk entries after their reg.
  const items: (TocEntry | FileGroup)[] = [];
  let current: FileGroup | undefined;
  for (const e of toc) {
    if (e.type === 'chunk') {
      if (!current) throw new FormatError('ENTRY_INVALID', '"chunk" entry without a preceding regular file', { ...bctx, entry: e.name });
      current.parts.push(e);
      continue;
    }
    if (e.type === 'reg') {
      current = { reg: e, parts: [e] };
      items.push(current);
    } else {
      current = undefined;
      items.push(e);
    }
  }

  // 2. Resolve chunk sizes and collect every data part.
  const files = new Map<FileGroup, Part[]>();
  const allParts: Part[] = [];
  for (const it of items) {
    if (!('reg' in it)) continue;
    const parts = resolveParts(it, bctx);
    files.set(it, parts);
    allParts.push(...parts);
  }

  // 3. Range checks and the sorted distinct offsets that bound spans.
  for (const p of allParts) {
    if (p.e.offset >= sc.payloadEnd) {
      throw new FormatError('CHUNK_INVALID', `offset ${p.e.offset} is not inside the payload area [0, ${sc.payloadEnd})`, {
        ...bctx, entry: p.path, range: [p.e.offset, p.e.offset],
      });
    }
  }
  checkSharedMembers(allParts, bctx);
  checkInnerOffsets(toc, allParts, sc.maxInnerOffset ?? Number.MAX_SAFE_INTEGER, bctx);
  const offsets = [...new Set(allParts.map((p) => p.e.offset))].sort((a, b) => a - b);
  const endOf = (offset: number): number => {
    // smallest offset > `offset`: binary search in the sorted distinct offsets.
    let lo = 0;
    let hi = offsets.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (offsets[mid]! <= offset) lo = mid + 1;
      else hi = mid;
    }
    return lo < offsets.length ? offsets[lo]! : sc.payloadEnd;
  };

  // 4. RawEntries, made as the index builder takes them: each is garbage once its node is in the table.
  return (function* (): Generator<RawEntry> {
    for (const it of items) {
      if (!('reg' in it)) yield rawOf(it, it.type as RawEntryType, []);
      else yield rawOf(it.reg, 'reg', chunkRefs(it.reg, files.get(it)!, endOf, sc, bctx));
    }
  })();
}

function rawOf(e: TocEntry, type: RawEntryType, chunks: readonly ChunkRef[]): RawEntry {
  return {
    name: e.name,
    type,
    mode: e.mode,
    uid: e.uid,
    gid: e.gid,
    size: type === 'reg' ? e.size : 0,
    mtimeSec: e.mtimeSec,
    mtimeNsec: e.mtimeNsec,
    ...(e.linkName !== undefined && (type === 'symlink' || type === 'hardlink') ? { linkName: e.linkName } : {}),
    devMajor: type === 'char' || type === 'block' ? e.devMajor : 0,
    devMinor: type === 'char' || type === 'block' ? e.devMinor : 0,
    xattrs: e.xattrs,
    ...(type === 'reg' && e.digest !== undefined ? { digest: e.digest } : {}),
    chunks,
  };
}

/** Chunk sizes per the reference fix-ups: last chunk = size − chunkOffset; chunks contiguous. */
function resolveParts(g: FileGroup, bctx: ErrorContext): Part[] {
  const path = g.reg.name;
  const ctx = { ...bctx, entry: path };
  const size = g.reg.size;
  if (size === 0) {
    if (g.parts.length > 1) throw new FormatError('CHUNK_INVALID', 'empty file followed by chunk entries', ctx);
    return [];
  }
  const out: Part[] = [];
  let pos = 0;
  g.parts.forEach((e, i) => {
    const last = i === g.parts.length - 1;
    if (e.chunkOffset !== pos) {
      throw new FormatError('CHUNK_INVALID', `chunk #${i} at file offset ${e.chunkOffset}, expected ${pos}`, ctx);
    }
    let n = e.chunkSize;
    if (last) {
      if (n !== 0 && n !== size - pos) throw new FormatError('CHUNK_INVALID', `last chunk size ${n}, expected ${size - pos}`, ctx);
      n = size - pos;
    } else if (n === 0) {
      throw new FormatError('CHUNK_INVALID', `chunk #${i} has no chunkSize but is not the last`, ctx);
    }
    if (n <= 0 || pos + n > size) throw new FormatError('CHUNK_INVALID', `chunk #${i} overruns the ${size}-byte file`, ctx);
    out.push({ e, fileOffset: pos, size: n, path });
    pos += n;
  });
  return out;
}

/**
 * Parts decoded from the same member start must not overlap in the uncompressed stream (this also
 * rejects two chunks claiming the same offset/innerOffset).
 */
function checkSharedMembers(parts: readonly Part[], bctx: ErrorContext): void {
  const sorted = [...parts].sort((a, b) => a.e.offset - b.e.offset || a.e.innerOffset - b.e.innerOffset);
  for (let i = 1; i < sorted.length; i++) {
    const a = sorted[i - 1]!;
    const b = sorted[i]!;
    if (a.e.offset === b.e.offset && a.e.innerOffset + a.size > b.e.innerOffset) {
      throw new FormatError(
        'CHUNK_INVALID',
        `chunk at offset ${b.e.offset}+${b.e.innerOffset} overlaps ${JSON.stringify(a.path.slice(0, 200))} at ${a.e.offset}+${a.e.innerOffset}`,
        { ...bctx, entry: b.path, range: [b.e.offset, b.e.offset] },
      );
    }
  }
}

/** Most bytes of tar header (512-byte blocks, PAX records for long names and xattrs, padding) an entry can take. */
export function headerAllowance(e: TocEntry): number {
  // ustar block + PAX block + padding of the previous payload (≤ 511) + PAX records (times, ids,
  // names at ≤ 3 UTF-8 bytes per UTF-16 unit, possibly written twice) + xattr records.
  let n = 2048 + 4 * (e.name.length + (e.linkName?.length ?? 0));
  for (const [k, v] of e.xattrs) n += 64 + 2 * (k.length + v.length);
  return n;
}

/**
 * Decompression-bomb bound (a read decodes from the member start to the end of its chunk): inside
 * a member, the bytes before a chunk that no TOC entry declares — tar headers of the entries since
 * the previous chunk of that member — may be at most those entries' header allowance, and no
 * innerOffset may exceed `maxInnerOffset`. So one read decodes at most what the TOC declares for the
 * chunks before it in its member plus their headers, never an undeclared run of a bomb.
 */
function checkInnerOffsets(toc: readonly TocEntry[], parts: readonly Part[], maxInnerOffset: number, bctx: ErrorContext): void {
  if (parts.every((p) => p.e.innerOffset === 0)) return;
  const allowPrefix = new Float64Array(toc.length + 1);
  const position = new Map<TocEntry, number>();
  toc.forEach((e, i) => {
    allowPrefix[i + 1] = allowPrefix[i]! + headerAllowance(e);
    position.set(e, i);
  });
  const members = new Map<number, { end: number; lastPos: number }>();
  let lastDataPos = -1;
  const ordered = [...parts].sort((a, b) => position.get(a.e)! - position.get(b.e)!);
  for (const p of ordered) {
    const i = position.get(p.e)!;
    const m = members.get(p.e.offset);
    const from = m ? m.lastPos : lastDataPos;
    const undeclared = p.e.innerOffset - (m ? m.end : 0);
    const allowed = allowPrefix[i + 1]! - allowPrefix[from + 1]!;
    if (p.e.innerOffset > maxInnerOffset || undeclared > allowed) {
      throw new FormatError(
        'CHUNK_INVALID',
        `innerOffset ${p.e.innerOffset} would decode ${Math.max(0, undeclared)} bytes no entry declares ` +
          `(allowed ${Math.floor(allowed)}, at most ${maxInnerOffset} in all)`,
        { ...bctx, entry: p.path, range: [p.e.offset, p.e.offset] },
      );
    }
    members.set(p.e.offset, { end: Math.max(m?.end ?? 0, p.e.innerOffset + p.size), lastPos: i });
    lastDataPos = i;
  }
}

function chunkRefs(
  reg: TocEntry,
  parts: readonly Part[],
  endOf: (offset: number) => number,
  sc: SpanContext,
  bctx: ErrorContext,
): ChunkRef[] {
  if (parts.length === 0) return [];
  const ctx = { ...bctx, entry: reg.name };
  const perChunk = parts.every((p) => p.e.chunkDigest !== undefined);
  if (perChunk) {
    return parts.map((p) => ({
      digest: p.e.chunkDigest!,
      fileOffset: p.fileOffset,
      size: p.size,
      span: { offset: p.e.offset, end: endOf(p.e.offset), innerOffset: p.e.innerOffset },
    }));
  }
  if (!sc.legacy) throw new FormatError('CHUNK_INVALID', 'non-empty file or chunk without chunkDigest', ctx);
  // Legacy stargz: the whole file is the verification unit.
  if (reg.digest === undefined) throw new FormatError('CHUNK_INVALID', 'legacy stargz file without digest', ctx);
  let end = 0;
  for (let i = 0; i < parts.length; i++) {
    const p = parts[i]!;
    if (i > 0 && p.e.offset < parts[i - 1]!.e.offset) {
      throw new FormatError('CHUNK_INVALID', `chunk #${i} offset ${p.e.offset} goes backwards`, ctx);
    }
    end = Math.max(end, endOf(p.e.offset));
  }
  const first = parts[0]!;
  return [{ digest: reg.digest, fileOffset: 0, size: reg.size, span: { offset: first.e.offset, end, innerOffset: first.e.innerOffset } }];
}
