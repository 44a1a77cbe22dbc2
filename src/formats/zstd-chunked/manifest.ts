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


export type TocEntryType = 'reg' | 'hardlink' | 'char' | 'block' | 'dir' | 'fifo' | 'symlink' | 'chunk';
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

function fields(obj: JsonObject, what: string, ctx: ErrorContext): Map<string, JsonValue> {
  const m = new Map<string, JsonValue>();
  for (const [k, v] of obj.entries) {
    const f = foldKey(k);
    if (m.has(f)) throw new FormatError('TOC_MALFORMED', `${what}: key ${JSON.stringify(k.slice(0, 50))} given twice (keys are case-insensitive)`, ctx);
    // null is Go's "leave the field alone": the same as absent.
    if (v !== null) m.set(f, v);
  }
  return m;
}

class EntryReader {
  constructor(
    readonly f: Map<string, JsonValue>,
    readonly ctx: ErrorContext,
  ) {}
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

function lift(s: string | undefined): ByteString | undefined {
  return s === undefined ? undefined : byteStringFromText(s);
}

function parseEntry(v: JsonValue, index: number, blobCtx: ErrorContext): TocEntry {
  const ictx = { ...blobCtx, entry: `#${index}` };
  if (!(v instanceof JsonObject)) throw new FormatError('TOC_MALFORMED', `entry #${index} is not an object`, ictx);
  const f = fields(v, `entry #${index}`, ictx);
  const pre = new EntryReader(f, ictx);
  const name = pre.str('name');
  if (name === undefined) throw new FormatError('TOC_MALFORMED', `entry #${index} has no name`, ictx);
  const ctx = { ...blobCtx, entry: name.slice(0, 300) };
  const r = new EntryReader(f, ctx);
  const type = r.str('type');
  if (type === undefined || !ENTRY_TYPES.has(type)) {
    throw new FormatError('ENTRY_INVALID', `unsupported entry type ${JSON.stringify((type ?? '').slice(0, 30))}`, ctx);
  }
  const chunkType = r.str('chunktype') ?? '';
  if (chunkType !== '' && chunkType !== 'zeros') throw new FormatError('CHUNK_INVALID', `unknown chunkType ${JSON.stringify(chunkType.slice(0, 30))}`, ctx);
  let mtimeSec = 0;
  let mtimeNsec = 0;
  const modtime = r.str('modtime');
  if (modtime !== undefined) {
    const t = parseRfc3339(modtime);
    if (!t) throw new FormatError('TOC_MALFORMED', `modtime ${JSON.stringify(modtime.slice(0, 60))} is not RFC 3339`, ctx);
    [mtimeSec, mtimeNsec] = [t.sec, t.nsec];
  }
  for (const k of ['accesstime', 'changetime']) {
    const s = r.str(k);
    if (s !== undefined && !parseRfc3339(s)) throw new FormatError('TOC_MALFORMED', `${k} is not RFC 3339`, ctx);
  }
  const xattrs = new Map<string, Buffer>();
  const xv = f.get('xattrs');
  if (xv !== undefined) {
    if (!(xv instanceof JsonObject)) throw new FormatError('TOC_MALFORMED', 'xattrs is not an object', ctx);
    for (const [k, val] of xv.entries) {
      if (xattrs.has(k)) throw new FormatError('TOC_MALFORMED', `xattr ${JSON.stringify(k.slice(0, 50))} given twice`, ctx);
      if (typeof val !== 'string') throw new FormatError('TOC_MALFORMED', `xattr ${JSON.stringify(k.slice(0, 50))} is not a string`, ctx);
      const b = decodeBase64Strict(val);
      if (!b) throw new FormatError('TOC_MALFORMED', `xattr ${JSON.stringify(k.slice(0, 50))} is not base64`, ctx);
      xattrs.set(k, b);
    }
  }
  const opt = <K extends string, T>(key: K, value: T | undefined): { [P in K]?: T } =>
    (value === undefined ? {} : { [key]: value }) as { [P in K]?: T };
  return {
    type: type as TocEntryType,
    name: byteStringFromText(name),
    ...opt('linkName', lift(r.str('linkname'))),
    mode: r.int('mode') ?? 0,
    size: r.int('size') ?? 0,
    uid: r.int('uid') ?? 0,
    gid: r.int('gid') ?? 0,
    mtimeSec,
    mtimeNsec,
    devMajor: r.int('devmajor') ?? 0,
    devMinor: r.int('devminor') ?? 0,
    xattrs,
    ...opt('digest', r.digest('digest')),
    ...opt('offset', r.int('offset')),
    ...opt('endOffset', r.int('endoffset')),
    ...opt('chunkSize', r.int('chunksize')),
    ...opt('chunkOffset', r.int('chunkoffset')),
    ...opt('chunkDigest', r.digest('chunkdigest')),
    chunkType,
  };
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
  const f = fields(doc, 'TOC', blobCtx);
  const r = new EntryReader(f, blobCtx);
  const version = r.int('version') ?? 0;
  if (version !== 1) throw new FormatError('TOC_MALFORMED', `unsupported TOC version ${version}`, blobCtx);
  const ev = f.get('entries') ?? [];
  if (!Array.isArray(ev)) throw new FormatError('TOC_MALFORMED', 'entries is not an array', blobCtx);
  if (ev.length > limits.maxEntries) {
    throw new FormatError('TOC_TOO_LARGE', `${ev.length} TOC entries exceed the limit of ${limits.maxEntries}`, blobCtx);
  }
  const entries = ev.map((e, i) => parseEntry(e, i, blobCtx));
  const tarSplitDigest = r.digest('tarsplitdigest');
  return { version, entries, ...(tarSplitDigest !== undefined ? { tarSplitDigest } : {}) };
}
