/**
 * The zstd:chunked TOC ("manifest", docs/formats.md §4.5) from its verified, decompressed JSON bytes to
 * typed entries. Only shapes are checked here (types, integer ranges, digests, base64, times);
 * what the entries mean together (chunk order, extents) is raw-entries.ts's job.
 *
 * Keys are matched the way the reference parser matches them (Go strings.ToLower of the key), and
 * a key that folds onto another key of the same object is rejected rather than resolved: the TOC
 * digest makes the document authentic, not unambiguous, and two readers must not see two layers.
 */
import type { Digest } from '../../core/digest.js';
import { parseDigest } from '../../core/digest.js';
import type { ErrorContext } from '../../core/errors.js';
import type { Limits } from '../../core/limits.js';
import { checkTocObjectCount } from '../json-count.js';
import { parseRfc3339 } from '../rfc3339.js';
import { byteStringFromText } from '../byte-string.js';
import { decodeBase64Strict } from '../../core/base64.js';
import { FormatError } from '../errors.js';
import type { ByteString } from '../model.js';
import { JsonNumber, JsonObject, JsonSyntaxError, parseStrictJson, type JsonValue } from './strict-json.js';


type TocEntryType = 'reg' | 'hardlink' | 'char' | 'block' | 'dir' | 'fifo' | 'symlink' | 'chunk';
const ENTRY_TYPES = new Set<string>(['reg', 'hardlink', 'char', 'block', 'dir', 'fifo', 'symlink', 'chunk']);

export interface TocEntry {
  readonly type: TocEntryType;
  /** The JSON string's UTF-8 bytes (Go's encoder has replaced any invalid byte with U+FFFD). */
  readonly name: ByteString;
  readonly linkName?: ByteString;
  readonly mode: number;
  readonly size: number;
  readonly uid: number;
  readonly gid: number;
  readonly mtimeSec: number;
  readonly mtimeNsec: number;
  readonly devMajor: number;
  readonly devMinor: number;
  readonly xattrs: ReadonlyMap<string, Buffer>;
  readonly digest?: Digest;
  readonly offset?: number;
  readonly endOffset?: number;
  readonly chunkSize?: number;
  readonly chunkOffset?: number;
  readonly chunkDigest?: Digest;
  /** "" (data) or "zeros". */
  readonly chunkType: '' | 'zeros';
}

export interface TocManifest {
  readonly version: number;
  readonly entries: readonly TocEntry[];
  readonly tarSplitDigest?: Digest;
}

/** Go's strings.ToLower as far as it can matter for ASCII field names (U+0130 lowers to "i" there). */
function foldKey(k: string): string {
  return k.replace(/\u0130/g, 'i').toLowerCase();
}

/**
 * Per-document memo of pure functions of strings that repeat across entries (the same dozen keys,
 * a handful of timestamps): a 7,000-entry TOC folds ~100,000 keys and parses ~20,000 times.
 * Lives for one parse only.
 */
class DocMemo {
  readonly #folded = new Map<string, string>();
  readonly #times = new Map<string, { sec: number; nsec: number } | undefined>();
  fold(k: string): string {
    let f = this.#folded.get(k);
    if (f === undefined) {
      f = foldKey(k);
      if (this.#folded.size < 4096) this.#folded.set(k, f);
    }
    return f;
  }
  time(s: string): { sec: number; nsec: number } | undefined {
    if (this.#times.has(s)) return this.#times.get(s);
    const t = parseRfc3339(s);
    if (this.#times.size < 4096) this.#times.set(s, t);
    return t;
  }
}

function fields(obj: JsonObject, what: string, ctx: ErrorContext | (() => ErrorContext), memo: DocMemo): Map<string, JsonValue> {
  const m = new Map<string, JsonValue>();
  for (const [k, v] of obj.entries) {
    const f = memo.fold(k);
    if (m.has(f)) {
      throw new FormatError(
        'TOC_MALFORMED',
        `${what}: key ${JSON.stringify(k.slice(0, 50))} given twice (keys are case-insensitive)`,
        typeof ctx === 'function' ? ctx() : ctx,
      );
    }
    // null is Go's "leave the field alone": the same as absent.
    if (v !== null) m.set(f, v);
  }
  return m;
}

class EntryReader {
  readonly #ctx: ErrorContext | (() => ErrorContext);
  /** `ctx` may be a thunk: it is only needed when something is wrong (most entries are fine). */
  constructor(
    readonly f: Map<string, JsonValue>,
    ctx: ErrorContext | (() => ErrorContext),
  ) {
    this.#ctx = ctx;
  }
  get ctx(): ErrorContext {
    return typeof this.#ctx === 'function' ? this.#ctx() : this.#ctx;
  }
  str(key: string): string | undefined {
    const v = this.f.get(key);
    if (v === undefined) return undefined;
    if (typeof v !== 'string') throw new FormatError('TOC_MALFORMED', `field ${key} is not a string`, this.ctx);
    return v;
  }
  int(key: string): number | undefined {
    const v = this.f.get(key);
    if (v === undefined) return undefined;
    if (!(v instanceof JsonNumber) || !/^-?(0|[1-9][0-9]*)$/.test(v.text)) {
      throw new FormatError('TOC_MALFORMED', `field ${key} is not an integer`, this.ctx);
    }
    const n = Number(v.text);
    if (!Number.isSafeInteger(n) || n < 0) throw new FormatError('ENTRY_INVALID', `field ${key} = ${v.text.slice(0, 30)} is out of range`, this.ctx);
    return n;
  }
  digest(key: string): Digest | undefined {
    const s = this.str(key);
    if (s === undefined || s === '') return undefined;
    try {
      return parseDigest(s, key, this.ctx);
    } catch (e) {
      throw new FormatError('TOC_MALFORMED', `field ${key} is not a valid digest`, this.ctx, { cause: e });
    }
  }
}

function parseEntry(v: JsonValue, index: number, blobCtx: ErrorContext, memo: DocMemo): TocEntry {
  const ictx = (): ErrorContext => ({ ...blobCtx, entry: `#${index}` });
  if (!(v instanceof JsonObject)) throw new FormatError('TOC_MALFORMED', `entry #${index} is not an object`, ictx());
  const f = fields(v, `entry #${index}`, ictx, memo);
  const pre = new EntryReader(f, ictx);
  const name = pre.str('name');
  if (name === undefined) throw new FormatError('TOC_MALFORMED', `entry #${index} has no name`, ictx());
  const ctxOf = (): ErrorContext => ({ ...blobCtx, entry: name.slice(0, 300) });
  const r = new EntryReader(f, ctxOf);
  const type = r.str('type');
  if (type === undefined || !ENTRY_TYPES.has(type)) {
    throw new FormatError('ENTRY_INVALID', `unsupported entry type ${JSON.stringify((type ?? '').slice(0, 30))}`, ctxOf());
  }
  const chunkType = r.str('chunktype') ?? '';
  if (chunkType !== '' && chunkType !== 'zeros') throw new FormatError('CHUNK_INVALID', `unknown chunkType ${JSON.stringify(chunkType.slice(0, 30))}`, ctxOf());
  let mtimeSec = 0;
  let mtimeNsec = 0;
  const modtime = r.str('modtime');
  if (modtime !== undefined) {
    const t = memo.time(modtime);
    if (!t) throw new FormatError('TOC_MALFORMED', `modtime ${JSON.stringify(modtime.slice(0, 60))} is not RFC 3339`, ctxOf());
    mtimeSec = t.sec;
    mtimeNsec = t.nsec;
  }
  for (const k of ['accesstime', 'changetime']) {
    const s = r.str(k);
    if (s !== undefined && !memo.time(s)) throw new FormatError('TOC_MALFORMED', `${k} is not RFC 3339`, ctxOf());
  }
  const xattrs = new Map<string, Buffer>();
  const xv = f.get('xattrs');
  if (xv !== undefined) {
    if (!(xv instanceof JsonObject)) throw new FormatError('TOC_MALFORMED', 'xattrs is not an object', ctxOf());
    for (const [k, val] of xv.entries) {
      if (xattrs.has(k)) throw new FormatError('TOC_MALFORMED', `xattr ${JSON.stringify(k.slice(0, 50))} given twice`, ctxOf());
      if (typeof val !== 'string') throw new FormatError('TOC_MALFORMED', `xattr ${JSON.stringify(k.slice(0, 50))} is not a string`, ctxOf());
      const b = decodeBase64Strict(val);
      if (!b) throw new FormatError('TOC_MALFORMED', `xattr ${JSON.stringify(k.slice(0, 50))} is not base64`, ctxOf());
      xattrs.set(k, b);
    }
  }
  // Built in place (optional fields only when present): no intermediate object per field.
  const e: { -readonly [K in keyof TocEntry]: TocEntry[K] } = {
    type: type as TocEntryType,
    name: byteStringFromText(name),
    mode: r.int('mode') ?? 0,
    size: r.int('size') ?? 0,
    uid: r.int('uid') ?? 0,
    gid: r.int('gid') ?? 0,
    mtimeSec,
    mtimeNsec,
    devMajor: r.int('devmajor') ?? 0,
    devMinor: r.int('devminor') ?? 0,
    xattrs,
    chunkType,
  };
  const linkName = r.str('linkname');
  if (linkName !== undefined) e.linkName = byteStringFromText(linkName);
  const digest = r.digest('digest');
  if (digest !== undefined) e.digest = digest;
  const offset = r.int('offset');
  if (offset !== undefined) e.offset = offset;
  const endOffset = r.int('endoffset');
  if (endOffset !== undefined) e.endOffset = endOffset;
  const chunkSize = r.int('chunksize');
  if (chunkSize !== undefined) e.chunkSize = chunkSize;
  const chunkOffset = r.int('chunkoffset');
  if (chunkOffset !== undefined) e.chunkOffset = chunkOffset;
  const chunkDigest = r.digest('chunkdigest');
  if (chunkDigest !== undefined) e.chunkDigest = chunkDigest;
  return e;
}

/** Parse the decompressed TOC JSON. Throws TOC_MALFORMED / TOC_TOO_LARGE / ENTRY_INVALID. */
export function parseTocManifest(json: Buffer, limits: Limits, blobCtx: ErrorContext): TocManifest {
  checkTocObjectCount(json, limits.maxEntries, blobCtx);
  let doc: JsonValue;
  try {
    doc = parseStrictJson(json.toString('utf8'));
  } catch (e) {
    if (e instanceof JsonSyntaxError) throw new FormatError('TOC_MALFORMED', `TOC is not valid JSON: ${e.message}`, blobCtx, { cause: e });
    throw e;
  }
  if (!(doc instanceof JsonObject)) throw new FormatError('TOC_MALFORMED', 'TOC is not a JSON object', blobCtx);
  const memo = new DocMemo();
  const f = fields(doc, 'TOC', blobCtx, memo);
  const r = new EntryReader(f, blobCtx);
  const version = r.int('version') ?? 0;
  if (version !== 1) throw new FormatError('TOC_MALFORMED', `unsupported TOC version ${version}`, blobCtx);
  const ev = f.get('entries') ?? [];
  if (!Array.isArray(ev)) throw new FormatError('TOC_MALFORMED', 'entries is not an array', blobCtx);
  if (ev.length > limits.maxEntries) {
    throw new FormatError('TOC_TOO_LARGE', `${ev.length} TOC entries exceed the limit of ${limits.maxEntries}`, blobCtx);
  }
  const entries = ev.map((e, i) => parseEntry(e, i, blobCtx, memo));
  const tarSplitDigest = r.digest('tarsplitdigest');
  return { version, entries, ...(tarSplitDigest !== undefined ? { tarSplitDigest } : {}) };
}
