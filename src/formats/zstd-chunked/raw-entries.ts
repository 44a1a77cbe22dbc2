/**
 * TOC entries → RawEntry[] with ChunkRefs (docs/formats.md §4.5 chunk rules).
 *
 * The writer closes a zstd frame at every chunk boundary, so each chunk is exactly one frame:
 * chunk i spans [chunk[i].offset, chunk[i+1].offset), the last one [offset, reg.endOffset), and
 * decoding starts at the chunk's own offset (innerOffset 0). A single-chunk file has no chunk
 * fields and is verified against the whole-file `digest`. `zeros` chunks are holes: never fetched,
 * their digest is still checked over the synthesized zeros.
 *
 * Extents are checked here, not trusted: every data chunk lies before the manifest's skippable frame,
 * data chunks of the whole layer come in strictly increasing, non-overlapping order (the writer
 * emits payloads in archive order), and a file's chunks tile [0, size) exactly.
 */
import { EMPTY_SHA256, type Digest } from '../../core/digest.js';
import type { ErrorContext } from '../../core/errors.js';
import { FormatError } from '../errors.js';
import type { ChunkRef, RawEntry } from '../model.js';
import type { TocEntry } from './manifest.js';

export interface ExtentBounds {
  /** First byte of the manifest's skippable-frame header: no chunk may reach it. */
  readonly dataEnd: number;
  readonly blobCtx: ErrorContext;
}

export function tocToRawEntries(entries: readonly TocEntry[], bounds: ExtentBounds): RawEntry[] {
  const out: RawEntry[] = [];
  /** End of the previous data chunk anywhere in the layer. */
  let lastEnd = 0;
  let i = 0;
  while (i < entries.length) {
    const e = entries[i]!;
    const ctx: ErrorContext = { ...bounds.blobCtx, entry: e.name.slice(0, 300) };
    if (e.type === 'chunk') throw new FormatError('CHUNK_INVALID', 'chunk entry does not follow its regular file', ctx);
    i++;
    let chunks: ChunkRef[] = [];
    if (e.type === 'reg') {
      const group: TocEntry[] = [e];
      while (i < entries.length && entries[i]!.type === 'chunk') group.push(entries[i++]!);
      if (e.size === 0) {
        if (group.length > 1) throw new FormatError('CHUNK_INVALID', 'empty file followed by chunk entries', ctx);
        if (e.digest !== undefined && e.digest !== EMPTY_SHA256) {
          throw new FormatError('CHUNK_INVALID', `empty file with digest ${e.digest}`, ctx);
        }
      } else {
        ({ chunks, lastEnd } = fileChunks(group, lastEnd, bounds, ctx));
      }
    } else if (e.size !== 0 && e.type !== 'hardlink') {
      // Hardlinks may carry their target's size in some producers; nothing else has content.
      throw new FormatError('ENTRY_INVALID', `${e.type} entry with size ${e.size}`, ctx);
    }
    out.push({
      name: e.name,
      type: e.type,
      mode: e.mode,
      uid: e.uid,
      gid: e.gid,
      size: e.type === 'reg' ? e.size : 0,
      mtimeSec: e.mtimeSec,
      mtimeNsec: e.mtimeNsec,
      ...(e.linkName !== undefined ? { linkName: e.linkName } : {}),
      devMajor: e.devMajor,
      devMinor: e.devMinor,
      xattrs: e.xattrs,
      ...(e.type === 'reg' && e.size > 0 && e.digest !== undefined ? { digest: e.digest } : {}),
      chunks,
    });
  }
  return out;
}

function fileChunks(
  group: readonly TocEntry[],
  lastEndIn: number,
  bounds: ExtentBounds,
  ctx: ErrorContext,
): { chunks: ChunkRef[]; lastEnd: number } {
  const reg = group[0]!;
  if (reg.offset === undefined || reg.endOffset === undefined) {
    throw new FormatError('CHUNK_INVALID', 'non-empty file without offset/endOffset', ctx);
  }
  const single = group.length === 1;
  if (single) {
    if (reg.chunkSize !== undefined && reg.chunkSize !== reg.size) {
      throw new FormatError('CHUNK_INVALID', `only chunk has size ${reg.chunkSize}, file has ${reg.size}`, ctx);
    }
    if (reg.digest !== undefined && reg.chunkDigest !== undefined && reg.digest !== reg.chunkDigest) {
      throw new FormatError('CHUNK_INVALID', 'only chunk digest differs from the file digest', ctx);
    }
  }
  let lastEnd = lastEndIn;
  let pos = 0;
  const chunks: ChunkRef[] = [];
  for (let k = 0; k < group.length; k++) {
    const c = group[k]!;
    const digest: Digest | undefined = c.chunkDigest ?? (single ? reg.digest : undefined);
    const size = single ? reg.size : c.chunkSize;
    const cctx: ErrorContext = digest !== undefined ? { ...ctx, chunk: digest } : ctx;
    if (k > 0 && c.name !== reg.name) {
      throw new FormatError('CHUNK_INVALID', `chunk entry named ${JSON.stringify(c.name.slice(0, 100))} inside this file's chunks`, cctx);
    }
    if (digest === undefined) throw new FormatError('CHUNK_INVALID', `chunk #${k} has no digest`, cctx);
    if (size === undefined || size <= 0) throw new FormatError('CHUNK_INVALID', `chunk #${k} has no size`, cctx);
    if ((c.chunkOffset ?? 0) !== pos) {
      throw new FormatError('CHUNK_INVALID', `chunk #${k} at file offset ${c.chunkOffset ?? 0}, expected ${pos}`, cctx);
    }
    if (c.offset === undefined) throw new FormatError('CHUNK_INVALID', `chunk #${k} has no offset`, cctx);
    const start = c.offset;
    const end = k + 1 < group.length ? group[k + 1]!.offset : reg.endOffset;
    if (end === undefined) throw new FormatError('CHUNK_INVALID', `chunk #${k + 1} has no offset`, cctx);
    const zeros = c.chunkType === 'zeros';
    const range = [start, end] as const;
    if (end > bounds.dataEnd || start > bounds.dataEnd) {
      throw new FormatError('CHUNK_INVALID', `chunk extent ${start}-${end} reaches the TOC at ${bounds.dataEnd}`, { ...cctx, range });
    }
    if (!zeros) {
      if (end <= start) throw new FormatError('CHUNK_INVALID', `empty or inverted chunk extent ${start}-${end}`, { ...cctx, range });
      if (start < lastEnd) {
        throw new FormatError('CHUNK_INVALID', `chunk extent ${start}-${end} overlaps or precedes the previous chunk ending at ${lastEnd}`, {
          ...cctx,
          range,
        });
      }
      lastEnd = end;
    }
    chunks.push({
      digest,
      fileOffset: pos,
      size,
      // A hole is never fetched; its span is kept only for diagnostics.
      span: { offset: start, end: Math.max(start, end), innerOffset: 0 },
      ...(zeros ? { zeros: true } : {}),
    });
    pos += size;
  }
  if (pos !== reg.size) throw new FormatError('CHUNK_INVALID', `chunks cover ${pos} bytes of a ${reg.size}-byte file`, ctx);
  return { chunks, lastEnd };
}
