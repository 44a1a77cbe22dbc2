/**
 * tar-split (docs/formats.md §4.6): the newline-separated JSON that lets containers/storage rebuild the
 * original tar byte-for-byte from the files: "segment" lines carry the raw tar bytes between file
 * contents (every header block, PAX record and padding), "file" lines stand for one entry's content.
 * Its digest is in the authenticated TOC, so its headers are the tar the TOC claims to index.
 *
 * We scan those headers with the same strict scanner as plain layers (content is skipped, never
 * needed) and bind the TOC to them: entry by entry, in order, every field that reaches the served
 * tree must agree (type, name, link target, mode bits, uid, gid, size, mtime, device numbers,
 * xattrs). A TOC that disagrees with its tar is the "layer view ambiguity" a full pull would expose:
 * FORMAT_CONFLICT, the layer is refused. One difference is expected and repaired: Go's JSON encoder
 * writes a name with invalid UTF-8 as U+FFFD, so where the TOC name is exactly that mangling of the
 * tar name, the tar's bytes are served. The reassembled length is the uncompressed tar size.
 */
import type { ErrorContext } from '../../core/errors.js';
import { DEFAULT_LIMITS, type Limits } from '../../core/limits.js';
import { byteStringFromText, byteStringOf, displayName } from '../byte-string.js';
import { decodeBase64Strict } from '../../core/base64.js';
import { FormatError } from '../errors.js';
import type { ByteString } from '../model.js';
import { bindEntry } from '../toc-binding.js';
import { TarScanner, type ScannedEntry } from '../tar/tar-scanner.js';
import type { TocEntry } from './manifest.js';

export interface TarSplitSummary {
  /** Every tar entry, headers resolved (PAX, GNU long names), in archive order. */
  readonly entries: readonly ScannedEntry[];
  /** Bytes of the reassembled tar: every segment plus every file's content. */
  readonly tarSize: number;
}

const TYPE_FILE = 1;
const TYPE_SEGMENT = 2;

export function parseTarSplit(data: Buffer, ctx: ErrorContext, limits: Limits = DEFAULT_LIMITS): TarSplitSummary {
  const text = data.toString('utf8');
  const scanner = new TarScanner(limits, typeof ctx.blob === 'string' ? ctx.blob : undefined);
  const entries: ScannedEntry[] = [];
  /** Entries whose "file" line has not come yet (exactly one per entry, right after its header). */
  let unpaired = 0;
  let tarSize = 0;
  let lastPosition = -1;
  let lineNo = 0;
  let start = 0;
  const push = (b: Buffer, bad: (m: string) => FormatError): void => {
    for (const ev of scanner.push(b)) {
      if (ev.kind === 'entry') {
        entries.push(ev.entry);
        unpaired++;
      } else if (ev.kind === 'data') {
        throw bad('a segment carries file content');
      }
    }
  };
  while (start < text.length) {
    let nl = text.indexOf('\n', start);
    if (nl < 0) nl = text.length;
    const line = text.slice(start, nl);
    start = nl + 1;
    lineNo++;
    if (line.trim() === '') continue;
    const bad = (msg: string): FormatError => new FormatError('TOC_MALFORMED', `tar-split line ${lineNo}: ${msg}`, ctx);
    const conflict = (msg: string): FormatError => new FormatError('FORMAT_CONFLICT', `tar-split line ${lineNo}: ${msg}`, ctx);
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
      tarSize += b.length;
      try {
        push(b, conflict);
      } catch (e) {
        if (e instanceof FormatError && e.code === 'TAR_INVALID') throw new FormatError('FORMAT_CONFLICT', `tar-split headers: ${e.message}`, ctx, { cause: e });
        throw e;
      }
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
      if (unpaired !== 1) throw conflict(unpaired === 0 ? 'a file entry without a tar header' : 'a tar header without its file entry');
      unpaired = 0;
      const e = entries[entries.length - 1]!;
      if (name !== e.name) throw conflict(`file entry ${JSON.stringify(displayName(name))} ≠ its header's name ${JSON.stringify(displayName(e.name))}`);
      // Header-only types have no content however large their size field (Go's reader skips none).
      let skipped: number;
      try {
        skipped = scanner.skipData(size as number);
      } catch (err) {
        throw conflict((err as Error).message);
      }
      if (e.type === 'reg' && (skipped !== e.size || size !== e.size)) throw conflict(`file entry size ${String(size)} ≠ header size ${e.size}`);
      tarSize += skipped;
    } else {
      throw bad(`unknown entry type ${JSON.stringify(o['type'])}`);
    }
  }
  if (unpaired !== 0) throw new FormatError('FORMAT_CONFLICT', 'tar-split ends with a tar header without its file entry', ctx);
  try {
    scanner.finish();
  } catch (e) {
    throw new FormatError('FORMAT_CONFLICT', `tar-split headers: ${(e as Error).message}`, ctx, { cause: e });
  }
  if (!Number.isSafeInteger(tarSize)) throw new FormatError('TOC_MALFORMED', 'tar-split describes an impossibly large tar', ctx);
  return { entries, tarSize };
}

/**
 * Throw FORMAT_CONFLICT unless the TOC's entries (chunk entries aside) are the tar-split's entries,
 * in order, field by field. Returns the TOC with the tar's name bytes where the TOC writer mangled
 * them (chunk entries follow their file).
 */
export function bindTocToTar(ts: TarSplitSummary, toc: readonly TocEntry[], ctx: ErrorContext): TocEntry[] {
  const out: TocEntry[] = [];
  let i = 0;
  let fileName: ByteString | undefined;
  for (const e of toc) {
    if (e.type === 'chunk') {
      out.push(fileName !== undefined && e.name !== fileName ? { ...e, name: fileName } : e);
      continue;
    }
    const h = ts.entries[i++];
    if (!h) throw new FormatError('FORMAT_CONFLICT', 'TOC lists an entry the tar-split does not have', { ...ctx, entry: displayName(e.name) });
    const { name, linkName } = bindEntry(e, h, ctx);
    fileName = e.type === 'reg' ? name : undefined;
    const fixed = name !== e.name || (linkName !== undefined && linkName !== e.linkName);
    out.push(fixed ? { ...e, name, ...(linkName !== undefined ? { linkName } : {}) } : e);
  }
  if (i !== ts.entries.length) {
    throw new FormatError('FORMAT_CONFLICT', 'tar-split has an entry the TOC does not list', { ...ctx, entry: displayName(ts.entries[i]!.name) });
  }
  return out;
}
