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
  const reader = new TarSplitReader(ctx, limits);
  const text = data.toString('utf8');
  let lineNo = 0;
  for (let start = 0; start < text.length; ) {
    let nl = text.indexOf('\n', start);
    if (nl < 0) nl = text.length;
    const line = text.slice(start, nl);
    start = nl + 1;
    lineNo++;
    if (line.trim() !== '') reader.line(line, lineNo);
  }
  return reader.end();
}

/** One tar-split line after another: segments scanned as tar headers, file lines paired with them. */
class TarSplitReader {
  readonly #ctx: ErrorContext;
  readonly #scanner: TarScanner;
  readonly #entries: ScannedEntry[] = [];
  /** Entries whose "file" line has not come yet (exactly one per entry, right after its header). */
  #unpaired = 0;
  #tarSize = 0;
  #lastPosition = -1;
  #lineNo = 0;

  constructor(ctx: ErrorContext, limits: Limits) {
    this.#ctx = ctx;
    this.#scanner = new TarScanner(limits, typeof ctx.blob === 'string' ? ctx.blob : undefined);
  }

  line(line: string, lineNo: number): void {
    this.#lineNo = lineNo;
    let v: unknown;
    try {
      v = JSON.parse(line);
    } catch {
      throw this.#bad('not JSON');
    }
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw this.#bad('not an object');
    const o = v as Record<string, unknown>;
    const position = o['position'];
    if (!Number.isSafeInteger(position) || (position as number) <= this.#lastPosition) throw this.#bad('position missing or not increasing');
    this.#lastPosition = position as number;
    const payload = o['payload'];
    if (payload !== undefined && payload !== null && typeof payload !== 'string') throw this.#bad('payload is not a string');
    if (o['type'] === TYPE_SEGMENT) this.#segment(typeof payload === 'string' ? payload : undefined);
    else if (o['type'] === TYPE_FILE) this.#file(o);
    else throw this.#bad(`unknown entry type ${JSON.stringify(o['type'])}`);
  }

  end(): TarSplitSummary {
    const ctx = this.#ctx;
    if (this.#unpaired !== 0) throw new FormatError('FORMAT_CONFLICT', 'tar-split ends with a tar header without its file entry', ctx);
    try {
      this.#scanner.finish();
    } catch (e) {
      throw new FormatError('FORMAT_CONFLICT', `tar-split headers: ${(e as Error).message}`, ctx, { cause: e });
    }
    if (!Number.isSafeInteger(this.#tarSize)) throw new FormatError('TOC_MALFORMED', 'tar-split describes an impossibly large tar', ctx);
    return { entries: this.#entries, tarSize: this.#tarSize };
  }

  #bad(msg: string): FormatError {
    return new FormatError('TOC_MALFORMED', `tar-split line ${this.#lineNo}: ${msg}`, this.#ctx);
  }

  #conflict(msg: string): FormatError {
    return new FormatError('FORMAT_CONFLICT', `tar-split line ${this.#lineNo}: ${msg}`, this.#ctx);
  }

  /** Raw tar bytes between file contents: headers only, scanned as the tar they are. */
  #segment(payload: string | undefined): void {
    const b = payload !== undefined ? decodeBase64Strict(payload) : Buffer.alloc(0);
    if (!b) throw this.#bad('segment payload is not base64');
    this.#tarSize += b.length;
    try {
      for (const ev of this.#scanner.push(b)) {
        if (ev.kind === 'entry') {
          this.#entries.push(ev.entry);
          this.#unpaired++;
        } else if (ev.kind === 'data') {
          throw this.#conflict('a segment carries file content');
        }
      }
    } catch (e) {
      if (e instanceof FormatError && e.code === 'TAR_INVALID') throw new FormatError(
        'FORMAT_CONFLICT',
        `tar-split headers: ${e.message}`,
        this.#ctx,
        { cause: e },
      );
      throw e;
    }
  }

  /** The content of the entry whose header came last: same name, and for regular files the same size. */
  #file(o: Record<string, unknown>): void {
    const size = o['size'] ?? 0;
    if (!Number.isSafeInteger(size) || (size as number) < 0) throw this.#bad('bad file size');
    const name = this.#fileName(o);
    if (this.#unpaired !== 1) throw this.#conflict(this.#unpaired === 0 ? 'a file entry without a tar header' : 'a tar header without its file entry');
    this.#unpaired = 0;
    const e = this.#entries[this.#entries.length - 1]!;
    if (name !== e.name) throw this.#conflict(`file entry ${JSON.stringify(displayName(name))} ≠ its header's name ${JSON.stringify(displayName(e.name))}`);
    // Header-only types have no content however large their size field (Go's reader skips none).
    let skipped: number;
    try {
      skipped = this.#scanner.skipData(size as number);
    } catch (err) {
      throw this.#conflict((err as Error).message);
    }
    if (e.type === 'reg' && (skipped !== e.size || size !== e.size)) throw this.#conflict(`file entry size ${String(size)} ≠ header size ${e.size}`);
    this.#tarSize += skipped;
  }

  /** name_raw (base64 of the bytes) when present, else name (UTF-8 text). */
  #fileName(o: Record<string, unknown>): ByteString {
    if (typeof o['name_raw'] === 'string' && o['name_raw'] !== '') {
      const raw = decodeBase64Strict(o['name_raw']);
      if (!raw) throw this.#bad('name_raw is not base64');
      return byteStringOf(raw);
    }
    if (typeof o['name'] === 'string') return byteStringFromText(o['name']);
    throw this.#bad('file entry without a name');
  }
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
