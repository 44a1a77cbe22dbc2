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

function parseEntry(v: unknown, index: number, bctx: ErrorContext): TocEntry {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) {
    throw new FormatError('TOC_MALFORMED', `TOC entry #${index} is not an object`, bctx);
  }
  const o = v as Record<string, unknown>;
  const rawName = o['name'];
  const ctx: ErrorContext = { ...bctx, entry: typeof rawName === 'string' ? rawName.slice(0, 300) : `#${index}` };
  const fail = (msg: string): never => {
    throw new FormatError('ENTRY_INVALID', msg, ctx);
  };
  // JSON null leaves a Go struct field at its zero value: treat it as absent, like the reference.
  const str = (k: string): string | undefined => {
    const x = o[k];
    if (x === undefined || x === null) return undefined;
    if (typeof x !== 'string') return fail(`field "${k}" is not a string`);
    return x;
  };
  const int = (k: string): number => {
    const x = o[k];
    if (x === undefined || x === null) return 0;
    if (typeof x !== 'number' || !Number.isSafeInteger(x) || x < 0) return fail(`field "${k}" is not a non-negative integer`);
    return x;
  };
  const digest = (k: string): Digest | undefined => {
    const s = str(k);
    if (s === undefined || s === '') return undefined;
    if (!isDigest(s)) return fail(`field "${k}" is not a valid digest`);
    return s as Digest;
  };
  const name = str('name');
  const type = str('type');
  if (type === undefined || !TYPES.has(type)) fail(`unknown entry type ${JSON.stringify(type)}`);
  if (name === undefined && type !== 'chunk') fail('entry without a name');
  str('userName');
  str('groupName');
  let mtimeSec = 0;
  let mtimeNsec = 0;
  const modtime = str('modtime');
  if (modtime !== undefined && modtime !== '') {
    const t = parseRfc3339(modtime);
    if (t === undefined) throw new FormatError('ENTRY_INVALID', `modtime ${JSON.stringify(modtime.slice(0, 64))} is not RFC 3339`, ctx);
    ({ sec: mtimeSec, nsec: mtimeNsec } = t);
  }
  let xattrs = NO_XATTRS;
  const xo = o['xattrs'];
  if (xo !== undefined && xo !== null) {
    if (typeof xo !== 'object' || Array.isArray(xo)) fail('field "xattrs" is not an object');
    const m = new Map<string, Buffer>();
    xattrs = m;
    for (const [k, val] of Object.entries(xo as Record<string, unknown>)) {
      const bytes = typeof val === 'string' ? decodeBase64Strict(val) : undefined;
      if (bytes === undefined) return fail(`xattr ${JSON.stringify(k.slice(0, 100))} is not base64`);
      m.set(k, bytes);
    }
  }
  const offset = int('offset');
  const linkName = str('linkName');
  const dg = digest('digest');
  const cdg = digest('chunkDigest');
  int('NumLink');
  return {
    name: byteStringFromText(name ?? ''),
    type: type as TocEntryType,
    size: int('size'),
    mtimeSec,
    mtimeNsec,
    ...(linkName !== undefined ? { linkName: byteStringFromText(linkName) } : {}),
    mode: int('mode'),
    uid: int('uid'),
    gid: int('gid'),
    offset,
    innerOffset: int('innerOffset'),
    devMajor: int('devMajor'),
    devMinor: int('devMinor'),
    xattrs,
    ...(dg !== undefined ? { digest: dg } : {}),
    chunkOffset: int('chunkOffset'),
    chunkSize: int('chunkSize'),
    // the same string object when equal (every single-chunk file): one copy kept, not two
    ...(cdg !== undefined ? { chunkDigest: cdg === dg ? dg : cdg } : {}),
  };
}
