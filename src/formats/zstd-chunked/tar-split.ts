/**
 * tar-split (formats.md §4.6): the newline-separated JSON that lets containers/storage rebuild the
 * original tar byte-for-byte from the files. We don't rebuild anything (that needs all content), but
 * an authenticated tar-split (its digest is in the TOC) must describe the same archive as the TOC:
 * same set of names, same regular-file sizes. A TOC that shows files the tar doesn't have (or hides
 * ones it has) is the "layer view ambiguity" the reference refuses. The reassembled length is the
 * uncompressed tar size, which we report.
 */
import type { ErrorContext } from '../../core/errors.js';
import { byteStringFromText, byteStringOf, displayName, goJsonMangle } from '../byte-string.js';
import { FormatError } from '../errors.js';
import type { ByteString } from '../model.js';
import { decodeBase64Strict, type TocEntry } from './manifest.js';

export interface TarSplitFile {
  /** The entry's name as bytes (name_raw when present: the tar header's exact bytes). */
  readonly name: ByteString;
  readonly size: number;
}

export interface TarSplitSummary {
  readonly files: readonly TarSplitFile[];
  /** Bytes of the reassembled tar: every segment payload plus every file's content. */
  readonly tarSize: number;
}

const TYPE_FILE = 1;
const TYPE_SEGMENT = 2;

export function parseTarSplit(data: Buffer, ctx: ErrorContext): TarSplitSummary {
  const text = data.toString('utf8');
  const files: TarSplitFile[] = [];
  let segmentBytes = 0;
  let fileBytes = 0;
  let lastPosition = -1;
  let lineNo = 0;
  let start = 0;
  while (start < text.length) {
    let nl = text.indexOf('\n', start);
    if (nl < 0) nl = text.length;
    const line = text.slice(start, nl);
    start = nl + 1;
    lineNo++;
    if (line.trim() === '') continue;
    const bad = (msg: string): FormatError => new FormatError('TOC_MALFORMED', `tar-split line ${lineNo}: ${msg}`, ctx);
    let v: unknown;
    try {
      v = JSON.parse(line);
    } catch {
      throw bad('not JSON');
    }
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw bad('not an object');
    const o = v as Record<string, unknown>;
    const position = o['position'];
    if (!Number.isSafeInteger(position) || (position as number) <= lastPosition) throw bad('position missing or not increasing');
    lastPosition = position as number;
    const payload = o['payload'];
    if (payload !== undefined && payload !== null && typeof payload !== 'string') throw bad('payload is not a string');
    if (o['type'] === TYPE_SEGMENT) {
      const b = typeof payload === 'string' ? decodeBase64Strict(payload) : Buffer.alloc(0);
      if (!b) throw bad('segment payload is not base64');
      segmentBytes += b.length;
    } else if (o['type'] === TYPE_FILE) {
      const size = o['size'] ?? 0;
      if (!Number.isSafeInteger(size) || (size as number) < 0) throw bad('bad file size');
      let name: ByteString;
      if (typeof o['name_raw'] === 'string' && o['name_raw'] !== '') {
        const raw = decodeBase64Strict(o['name_raw']);
        if (!raw) throw bad('name_raw is not base64');
        name = byteStringOf(raw);
      } else if (typeof o['name'] === 'string') {
        name = byteStringFromText(o['name']);
      } else {
        throw bad('file entry without a name');
      }
      files.push({ name, size: size as number });
      fileBytes += size as number;
    } else {
      throw bad(`unknown entry type ${JSON.stringify(o['type'])}`);
    }
  }
  const tarSize = segmentBytes + fileBytes;
  if (!Number.isSafeInteger(tarSize)) throw new FormatError('TOC_MALFORMED', 'tar-split describes an impossibly large tar', ctx);
  // Every entry has at least one 512-byte header block in the raw segments.
  if (segmentBytes < files.length * 512) {
    throw new FormatError('FORMAT_CONFLICT', `tar-split segments (${segmentBytes} bytes) cannot hold ${files.length} tar headers`, ctx);
  }
  return { files, tarSize };
}

/**
 * Throw FORMAT_CONFLICT unless the tar-split and the TOC's non-chunk entries describe the same
 * entries. Returns the TOC names whose tar-split name differs only because the TOC writer (Go's
 * JSON encoder) replaced invalid UTF-8 bytes with U+FFFD: TOC name → the tar's real bytes.
 */
export function checkTarSplitMatchesToc(ts: TarSplitSummary, toc: readonly TocEntry[], ctx: ErrorContext): Map<ByteString, ByteString> {
  const byName = new Map<ByteString, TocEntry>();
  for (const e of toc) {
    if (e.type === 'chunk') continue;
    if (byName.has(e.name)) throw new FormatError('ENTRY_DUPLICATE', 'duplicate path in TOC', { ...ctx, entry: displayName(e.name) });
    byName.set(e.name, e);
  }
  const seen = new Set<ByteString>();
  const renames = new Map<ByteString, ByteString>();
  for (const f of ts.files) {
    const ectx = { ...ctx, entry: displayName(f.name) };
    let tocName = f.name;
    let e = byName.get(tocName);
    if (!e) {
      const mangled = goJsonMangle(f.name);
      e = mangled !== f.name ? byName.get(mangled) : undefined;
      if (e) {
        if (renames.has(mangled)) throw new FormatError('FORMAT_CONFLICT', 'two tar names map onto one mangled TOC name', ectx);
        renames.set(mangled, f.name);
        tocName = mangled;
      }
    }
    if (!e) throw new FormatError('FORMAT_CONFLICT', 'tar-split has an entry the TOC does not list', ectx);
    if (seen.has(tocName)) throw new FormatError('FORMAT_CONFLICT', 'tar-split lists the entry twice', ectx);
    seen.add(tocName);
    const tocSize = e.type === 'reg' ? e.size : 0;
    if (f.size !== tocSize && !(e.type === 'hardlink')) {
      throw new FormatError('FORMAT_CONFLICT', `tar-split size ${f.size} differs from TOC size ${tocSize}`, ectx);
    }
  }
  for (const name of byName.keys()) {
    if (!seen.has(name)) throw new FormatError('FORMAT_CONFLICT', 'TOC lists an entry the tar-split does not have', { ...ctx, entry: displayName(name) });
  }
  return renames;
}
