/**
 * Strict parser of the eStargz TOC JSON (docs/formats.md §2.6). Input is the verified JSON bytes; output
 * is a typed list of TOC entries in archive order. Everything the JSON says is checked for type and
 * range here (Go's decoder would reject a string where an int64 goes, a fraction, an overflow), so
 * later stages only deal with well-typed values. Unknown keys are ignored, as Go does.
 *
 * Zero values are omitted by the writers (`omitempty`): absent mode/uid/gid/size/offset = 0.
 * userName/groupName are name-compressed by writers; the model does not need names, so we only
 * type-check them.
 */
import type { Digest } from '../../core/digest.js';
import { isDigest } from '../../core/digest.js';
import type { ErrorContext } from '../../core/errors.js';
import { byteStringFromText } from '../byte-string.js';
import { decodeBase64Strict } from '../../core/base64.js';
import { FormatError } from '../errors.js';
import { checkTocObjectCount, splitTopLevelArray } from '../json-count.js';
import { parseRfc3339 } from '../rfc3339.js';
import type { VerifiedToc } from '../verified-toc.js';
import type { ByteString } from '../model.js';

export type TocEntryType = 'dir' | 'reg' | 'symlink' | 'hardlink' | 'char' | 'block' | 'fifo' | 'chunk';
const TYPES = new Set<string>(['dir', 'reg', 'symlink', 'hardlink', 'char', 'block', 'fifo', 'chunk']);

export interface TocEntry {
  /** The JSON string's UTF-8 bytes (a Go writer has replaced any invalid byte with U+FFFD). */
  readonly name: ByteString;
  readonly type: TocEntryType;
  readonly size: number;
  readonly mtimeSec: number;
  readonly mtimeNsec: number;
  readonly linkName?: ByteString;
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  /** Blob offset of the member the payload starts in (absent in the JSON = 0, legal with innerOffset). */
  readonly offset: number;
  readonly innerOffset: number;
  readonly devMajor: number;
  readonly devMinor: number;
  readonly xattrs: ReadonlyMap<string, Buffer>;
  readonly digest?: Digest;
  readonly chunkOffset: number;
  /** 0 = "to the end of the file". */
  readonly chunkSize: number;
  readonly chunkDigest?: Digest;
}


/** The entries of a TOC whose bytes were verified (only a VerifiedToc is parsed). */
export function parseToc(toc: VerifiedToc, ctx: ErrorContext, maxEntries: number): TocEntry[] {
  const json = toc.bytes;
  checkTocObjectCount(json, maxEntries, ctx);
  // TextDecoder with fatal: invalid UTF-8 in a TOC is an error, not silently replaced characters.
  const decoder = new TextDecoder('utf-8', { fatal: true });
  const parse = (bytes: Uint8Array): unknown => {
    try {
      return JSON.parse(decoder.decode(bytes));
    } catch (e) {
      throw new FormatError('TOC_MALFORMED', `TOC is not valid JSON: ${(e as Error).message}`, ctx, { cause: e });
    }
  };
  // One entry at a time when the text allows it: the whole document as JS objects is several times
  // the text, and it would all be alive at once.
  const split = splitTopLevelArray(json, 'entries');
  if (split) {
    const skeleton = Buffer.concat([json.subarray(0, split.arrayStart), Buffer.from('0'), json.subarray(split.arrayEnd)]);
    const top = checkTop(parse(skeleton), ctx);
    if (top['entries'] === 0) {
      const n = split.elements.length / 2;
      if (n > maxEntries) throw new FormatError('TOC_TOO_LARGE', `${n} TOC entries exceed the limit of ${maxEntries}`, ctx);
      const out: TocEntry[] = new Array(n);
      for (let i = 0; i < n; i++) out[i] = parseEntry(parse(json.subarray(split.elements[2 * i], split.elements[2 * i + 1])), i, ctx);
      return out;
    }
  }
  const top = checkTop(parse(json), ctx);
  const entries = top['entries'];
  if (!Array.isArray(entries)) throw new FormatError('TOC_MALFORMED', 'TOC "entries" is not an array', ctx);
  if (entries.length > maxEntries) {
    throw new FormatError('TOC_TOO_LARGE', `${entries.length} TOC entries exceed the limit of ${maxEntries}`, ctx);
  }
  return entries.map((e, i) => parseEntry(e, i, ctx));
}

function checkTop(doc: unknown, ctx: ErrorContext): Record<string, unknown> {
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) {
    throw new FormatError('TOC_MALFORMED', 'TOC is not a JSON object', ctx);
  }
  const top = doc as Record<string, unknown>;
  if (top['version'] !== 1) throw new FormatError('TOC_MALFORMED', `TOC version ${JSON.stringify(top['version'])}, want 1`, ctx);
  return top;
}

/** Entries without xattrs share this map (never mutated). */
const NO_XATTRS: ReadonlyMap<string, Buffer> = new Map();
const NO_TIME = { sec: 0, nsec: 0 } as const;

/** One TOC entry's JSON object, field by field (the checks run in the order the fields are read). */
function parseEntry(v: unknown, index: number, bctx: ErrorContext): TocEntry {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) {
    throw new FormatError('TOC_MALFORMED', `TOC entry #${index} is not an object`, bctx);
  }
  const o = v as Fields;
  const rawName = o['name'];
  const ctx: ErrorContext = { ...bctx, entry: typeof rawName === 'string' ? rawName.slice(0, 300) : `#${index}` };
  const name = stringField(o, 'name', ctx);
  const type = stringField(o, 'type', ctx);
  if (type === undefined || !TYPES.has(type)) invalid(`unknown entry type ${JSON.stringify(type)}`, ctx);
  if (name === undefined && type !== 'chunk') invalid('entry without a name', ctx);
  // Owner names are only type-checked: the model does not need them.
  stringField(o, 'userName', ctx);
  stringField(o, 'groupName', ctx);
  const mtime = modtimeField(o, ctx);
  const xattrs = xattrsField(o, ctx);
  const offset = intField(o, 'offset', ctx);
  const linkName = stringField(o, 'linkName', ctx);
  const dg = digestField(o, 'digest', ctx);
  const cdg = digestField(o, 'chunkDigest', ctx);
  intField(o, 'NumLink', ctx);
  return {
    name: byteStringFromText(name ?? ''),
    type: type as TocEntryType,
    size: intField(o, 'size', ctx),
    mtimeSec: mtime.sec,
    mtimeNsec: mtime.nsec,
    ...(linkName !== undefined ? { linkName: byteStringFromText(linkName) } : {}),
    mode: intField(o, 'mode', ctx),
    uid: intField(o, 'uid', ctx),
    gid: intField(o, 'gid', ctx),
    offset,
    innerOffset: intField(o, 'innerOffset', ctx),
    devMajor: intField(o, 'devMajor', ctx),
    devMinor: intField(o, 'devMinor', ctx),
    xattrs,
    ...(dg !== undefined ? { digest: dg } : {}),
    chunkOffset: intField(o, 'chunkOffset', ctx),
    chunkSize: intField(o, 'chunkSize', ctx),
    // the same string object when equal (every single-chunk file): one copy kept, not two
    ...(cdg !== undefined ? { chunkDigest: cdg === dg ? dg : cdg } : {}),
  };
}

/** A TOC entry's JSON object. */
type Fields = Readonly<Record<string, unknown>>;

function invalid(msg: string, ctx: ErrorContext): never {
  throw new FormatError('ENTRY_INVALID', msg, ctx);
}

// JSON null leaves a Go struct field at its zero value: treat it as absent, like the reference.
function stringField(o: Fields, k: string, ctx: ErrorContext): string | undefined {
  const x = o[k];
  if (x === undefined || x === null) return undefined;
  if (typeof x !== 'string') return invalid(`field "${k}" is not a string`, ctx);
  return x;
}

function intField(o: Fields, k: string, ctx: ErrorContext): number {
  const x = o[k];
  if (x === undefined || x === null) return 0;
  if (typeof x !== 'number' || !Number.isSafeInteger(x) || x < 0) return invalid(`field "${k}" is not a non-negative integer`, ctx);
  return x;
}

function digestField(o: Fields, k: string, ctx: ErrorContext): Digest | undefined {
  const s = stringField(o, k, ctx);
  if (s === undefined || s === '') return undefined;
  if (!isDigest(s)) return invalid(`field "${k}" is not a valid digest`, ctx);
  return s as Digest;
}

/** "modtime" (RFC 3339; absent or empty = the epoch). */
function modtimeField(o: Fields, ctx: ErrorContext): { readonly sec: number; readonly nsec: number } {
  const modtime = stringField(o, 'modtime', ctx);
  if (modtime === undefined || modtime === '') return NO_TIME;
  const t = parseRfc3339(modtime);
  if (t === undefined) return invalid(`modtime ${JSON.stringify(modtime.slice(0, 64))} is not RFC 3339`, ctx);
  return t;
}

/** "xattrs": name → base64 value. */
function xattrsField(o: Fields, ctx: ErrorContext): ReadonlyMap<string, Buffer> {
  const xo = o['xattrs'];
  if (xo === undefined || xo === null) return NO_XATTRS;
  if (typeof xo !== 'object' || Array.isArray(xo)) invalid('field "xattrs" is not an object', ctx);
  const m = new Map<string, Buffer>();
  for (const [k, val] of Object.entries(xo as Fields)) {
    const bytes = typeof val === 'string' ? decodeBase64Strict(val) : undefined;
    if (bytes === undefined) return invalid(`xattr ${JSON.stringify(k.slice(0, 100))} is not base64`, ctx);
    m.set(k, bytes);
  }
  return m;
}
