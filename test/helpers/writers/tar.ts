/**
 * Test-fixture tar writer (ustar + PAX), written from formats.md §1.2. Used by the eStargz and
 * zstd:chunked fixture writers and the plain-layer tests. Emits exactly what Go's archive/tar would
 * need to describe an entry: PAX records for long names/links, xattrs (SCHILY.xattr.*), big ids.
 */
export type TarEntryType = 'reg' | 'dir' | 'symlink' | 'hardlink' | 'char' | 'block' | 'fifo';

export interface TarEntry {
  name: string;
  type: TarEntryType;
  mode?: number;
  uid?: number;
  gid?: number;
  uname?: string;
  gname?: string;
  /** seconds since epoch */
  mtime?: number;
  linkName?: string;
  devMajor?: number;
  devMinor?: number;
  xattrs?: Record<string, Buffer | string>;
  /** reg content */
  data?: Buffer;
  /** Exact name bytes (may be non-UTF-8), written in a PAX `path` record as Go's archive/tar does; `name` is then only a label. */
  rawName?: Buffer;
  /** Exact link target bytes, written in a PAX `linkpath` record. */
  rawLinkName?: Buffer;
  /** A PAX `mtime` record as written ("-86400", "1700000000.123456789"); the ustar field gets max(0, ⌊mtime⌋). */
  paxMtime?: string;
}

const TYPEFLAG: Record<TarEntryType, string> = {
  reg: '0', hardlink: '1', symlink: '2', char: '3', block: '4', dir: '5', fifo: '6',
};

function octal(v: number, len: number): string {
  return v.toString(8).padStart(len - 1, '0') + '\0';
}

function writeStr(buf: Buffer, off: number, len: number, s: string): void {
  const b = Buffer.from(s, 'utf8');
  b.copy(buf, off, 0, Math.min(len, b.length));
}

function paxRecord(key: string, value: Buffer): Buffer {
  // "<len> key=value\n" where len counts the whole record including its own digits.
  const body = Buffer.concat([Buffer.from(` ${key}=`), value, Buffer.from('\n')]);
  let len = body.length + 1;
  while (String(len).length + body.length !== len) len = String(len).length + body.length;
  return Buffer.concat([Buffer.from(String(len)), body]);
}

export function tarHeaderBlock(opts: {
  name: string; typeflag: string; mode: number; uid: number; gid: number; size: number; mtime: number;
  linkName?: string; uname?: string; gname?: string; devMajor?: number; devMinor?: number;
}): Buffer {
  const h = Buffer.alloc(512);
  writeStr(h, 0, 100, opts.name);
  writeStr(h, 100, 8, octal(opts.mode & 0o7777777, 8));
  writeStr(h, 108, 8, octal(opts.uid, 8));
  writeStr(h, 116, 8, octal(opts.gid, 8));
  writeStr(h, 124, 12, octal(opts.size, 12));
  writeStr(h, 136, 12, octal(opts.mtime, 12));
  h.fill(0x20, 148, 156);
  writeStr(h, 156, 1, opts.typeflag);
  writeStr(h, 157, 100, opts.linkName ?? '');
  writeStr(h, 257, 6, 'ustar\0');
  writeStr(h, 263, 2, '00');
  writeStr(h, 265, 32, opts.uname ?? '');
  writeStr(h, 297, 32, opts.gname ?? '');
  writeStr(h, 329, 8, octal(opts.devMajor ?? 0, 8));
  writeStr(h, 337, 8, octal(opts.devMinor ?? 0, 8));
  let sum = 0;
  for (const b of h) sum += b;
  writeStr(h, 148, 8, sum.toString(8).padStart(6, '0') + '\0 ');
  return h;
}

/** Header block(s) for an entry: an optional PAX 'x' header + its records, then the ustar header. */
export function tarHeaders(e: TarEntry): Buffer {
  const size = e.type === 'reg' ? (e.data?.length ?? 0) : 0;
  const pax: Buffer[] = [];
  const nameBytes = Buffer.byteLength(e.name);
  const needsPaxName = nameBytes > 100 || /[^\x20-\x7e]/.test(e.name);
  if (e.rawName) pax.push(paxRecord('path', e.rawName));
  else if (needsPaxName) pax.push(paxRecord('path', Buffer.from(e.name)));
  if (e.rawLinkName) pax.push(paxRecord('linkpath', e.rawLinkName));
  else if (e.linkName !== undefined && (Buffer.byteLength(e.linkName) > 100 || /[^\x20-\x7e]/.test(e.linkName))) {
    pax.push(paxRecord('linkpath', Buffer.from(e.linkName)));
  }
  const uid = e.uid ?? 0;
  const gid = e.gid ?? 0;
  if (uid > 0o7777777) pax.push(paxRecord('uid', Buffer.from(String(uid))));
  if (gid > 0o7777777) pax.push(paxRecord('gid', Buffer.from(String(gid))));
  if (size > 0o77777777777) pax.push(paxRecord('size', Buffer.from(String(size))));
  if (e.paxMtime !== undefined) pax.push(paxRecord('mtime', Buffer.from(e.paxMtime)));
  for (const [k, v] of Object.entries(e.xattrs ?? {}).sort(([a], [b]) => (a < b ? -1 : 1))) {
    pax.push(paxRecord(`SCHILY.xattr.${k}`, typeof v === 'string' ? Buffer.from(v) : v));
  }
  const out: Buffer[] = [];
  const mtime = e.mtime ?? 0;
  if (pax.length) {
    const body = Buffer.concat(pax);
    out.push(tarHeaderBlock({ name: 'PaxHeaders/' + e.name.slice(0, 80), typeflag: 'x', mode: 0o644, uid: 0, gid: 0, size: body.length, mtime }));
    out.push(padTo512(body));
  }
  out.push(
    tarHeaderBlock({
      name: needsPaxName || e.rawName ? asciiPrefix(e.name) : e.name,
      typeflag: TYPEFLAG[e.type],
      mode: e.mode ?? (e.type === 'dir' ? 0o755 : 0o644),
      uid: Math.min(uid, 0o7777777),
      gid: Math.min(gid, 0o7777777),
      size: Math.min(size, 0o77777777777),
      mtime,
      ...(e.linkName !== undefined || e.rawLinkName ? { linkName: asciiPrefix(e.linkName ?? 'x') } : {}),
      ...(e.uname !== undefined ? { uname: e.uname } : {}),
      ...(e.gname !== undefined ? { gname: e.gname } : {}),
      ...(e.devMajor !== undefined ? { devMajor: e.devMajor } : {}),
      ...(e.devMinor !== undefined ? { devMinor: e.devMinor } : {}),
    }),
  );
  return Buffer.concat(out);
}

function asciiPrefix(s: string): string {
  return s.replace(/[^\x20-\x7e]/g, '_').slice(0, 100);
}

export function padTo512(b: Buffer): Buffer {
  const rem = b.length % 512;
  return rem === 0 ? b : Buffer.concat([b, Buffer.alloc(512 - rem)]);
}

export function padding(size: number): Buffer {
  const rem = size % 512;
  return Buffer.alloc(rem === 0 ? 0 : 512 - rem);
}

export const TAR_EOF = Buffer.alloc(1024);

/** A whole tar archive (with the two zero blocks at the end unless `eof: false`). */
export function buildTar(entries: readonly TarEntry[], opts: { eof?: boolean } = {}): Buffer {
  const parts: Buffer[] = [];
  for (const e of entries) {
    parts.push(tarHeaders(e));
    if (e.type === 'reg' && e.data && e.data.length) {
      parts.push(e.data, padding(e.data.length));
    }
  }
  if (opts.eof !== false) parts.push(TAR_EOF);
  return Buffer.concat(parts);
}
