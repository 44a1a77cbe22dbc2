/**
 * A TOC entry against the tar header it indexes (docs/formats.md §0): every field that reaches the
 * served tree must agree — name, type, mode bits, uid, gid, size, mtime, link target, device
 * numbers, xattrs. Used by the zstd:chunked tar-split check and the eStargz inline-header check.
 *
 * One difference is expected and repaired: Go's encoding/json writes a name holding invalid UTF-8
 * with U+FFFD per bad byte, so where the TOC name is exactly that mangling of the header's name,
 * the header's bytes are the name to serve.
 */
import type { ErrorContext } from '../core/errors.js';
import { displayName, goJsonMangle } from './byte-string.js';
import { FormatError } from './errors.js';
import type { ByteString, EntryStat, RawEntryType } from './model.js';

/** The fields both sides carry (TOC entries of either format, scanned tar headers). */
export interface BindableEntry extends EntryStat {
  readonly name: ByteString;
  readonly type: RawEntryType | 'chunk';
  readonly linkName?: ByteString;
  readonly devMajor: number;
  readonly devMinor: number;
  readonly xattrs: ReadonlyMap<string, Buffer>;
}

export interface BoundNames {
  /** The name to serve: the header's bytes. */
  readonly name: ByteString;
  /** Symlink / hardlink target to serve (the header's bytes), when the entry is a link. */
  readonly linkName?: ByteString;
}

/**
 * `toc` mtimes of whole seconds only: the eStargz writer (stargz-snapshotter) formats modtime as
 * RFC 3339 of the header's time rounded to the second (half up), without a fraction.
 */
export interface BindOptions {
  readonly tocSeconds?: boolean;
}

/** A time as an eStargz TOC records it: rounded to the nearest second, half up. */
export function tocRoundedSeconds(sec: number, nsec: number): number {
  return nsec >= 500_000_000 ? sec + 1 : sec;
}

/**
 * Throws FORMAT_CONFLICT naming the first field on which `toc` and the header `tar` disagree;
 * returns the names to serve (the header's bytes).
 */
export function bindEntry(toc: BindableEntry, tar: BindableEntry, ctx: ErrorContext, opts: BindOptions = {}): BoundNames {
  const ectx = { ...ctx, entry: displayName(toc.name) };
  const bad = (what: string, t: unknown, h: unknown): never => {
    throw new FormatError('FORMAT_CONFLICT', `TOC and tar header disagree on ${what}: ${String(t)} (TOC) ≠ ${String(h)} (tar)`, ectx);
  };
  const name = sameName(toc.name, tar.name, true);
  if (name === undefined) bad('the name', JSON.stringify(displayName(toc.name)), JSON.stringify(displayName(tar.name)));
  if (toc.type !== tar.type) bad('the type', toc.type, tar.type);
  if ((toc.mode & 0o7777) !== (tar.mode & 0o7777)) bad('the mode', (toc.mode & 0o7777).toString(8), (tar.mode & 0o7777).toString(8));
  if (toc.uid !== tar.uid) bad('the uid', toc.uid, tar.uid);
  if (toc.gid !== tar.gid) bad('the gid', toc.gid, tar.gid);
  if (toc.type === 'reg' && toc.size !== tar.size) bad('the size', toc.size, tar.size);
  const exact = toc.mtimeSec === tar.mtimeSec && toc.mtimeNsec === tar.mtimeNsec;
  const rounded = opts.tocSeconds === true && toc.mtimeNsec === 0 && toc.mtimeSec === tocRoundedSeconds(tar.mtimeSec, tar.mtimeNsec);
  if (!exact && !rounded) bad('the mtime', `${toc.mtimeSec}.${toc.mtimeNsec}`, `${tar.mtimeSec}.${tar.mtimeNsec}`);
  let linkName: ByteString | undefined;
  if (toc.type === 'symlink' || toc.type === 'hardlink') {
    const none = '' as ByteString;
    linkName = sameName(toc.linkName ?? none, tar.linkName ?? none, toc.type === 'hardlink');
    if (linkName === undefined) bad('the link target', JSON.stringify(displayName(toc.linkName ?? none)), JSON.stringify(displayName(tar.linkName ?? none)));
  }
  if ((toc.type === 'char' || toc.type === 'block') && (toc.devMajor !== tar.devMajor || toc.devMinor !== tar.devMinor)) {
    bad('the device numbers', `${toc.devMajor},${toc.devMinor}`, `${tar.devMajor},${tar.devMinor}`);
  }
  if (toc.xattrs.size !== tar.xattrs.size) bad('the xattrs', [...toc.xattrs.keys()].join(','), [...tar.xattrs.keys()].join(','));
  for (const [k, v] of toc.xattrs) {
    const t = tar.xattrs.get(k);
    if (!t?.equals(v)) bad(`xattr ${JSON.stringify(k.slice(0, 100))}`, v.toString('base64').slice(0, 60), t?.toString('base64').slice(0, 60) ?? 'absent');
  }
  return { name: name!, ...(linkName !== undefined ? { linkName } : {}) };
}

/**
 * The name to serve when the TOC says `toc` and the tar header says `tar`: the tar's bytes when they
 * are the same name (as paths when `asPath`: "./a/" = "a") or the TOC holds Go's U+FFFD mangling
 * of them; undefined when they differ.
 */
export function sameName(toc: ByteString, tar: ByteString, asPath: boolean): ByteString | undefined {
  if (toc === tar) return tar;
  // Only the spelling is compared here ("./a/" = "a"); limits are the index builder's job, and the
  // TOC's mangled form of a legal 255-byte name may itself be up to 765 bytes long.
  const norm = (n: ByteString): ByteString => (asPath ? (n.split('/').filter((p) => p !== '' && p !== '.').join('/') as ByteString) : n);
  const t = norm(toc);
  const h = norm(tar);
  if (t === h || t === goJsonMangle(h)) return tar;
  return undefined;
}

/** U+FFFD as a ByteString (its UTF-8 bytes): a TOC name holding it may be a Go-mangled one. */
export const REPLACEMENT_CHAR = '\xef\xbf\xbd' as ByteString;
