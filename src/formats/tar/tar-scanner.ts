/**
 * A push-driven, strictly bounded tar stream scanner.
 *
 * The plain-layer reader feeds it the uncompressed stream in pieces of any size; each push returns
 * the events found in that piece, in order: an `entry` (a fully resolved header: PAX 'x' records and
 * GNU 'L'/'K' long names already applied), then `data` events carrying the entry's content as
 * sub-arrays of the pushed buffer (valid until the next push), then the next entry, and finally `end`
 * at the two zero blocks. Parsing is synchronous and never buffers more than one header block or one
 * header extension (≤ limits.maxTarHeaderExtBytes): content is passed through, never accumulated,
 * so a hostile archive can cost at most that much memory and time linear in its length.
 *
 * Semantics follow Go's archive/tar (what containers/storage applies layers with) where readers
 * differ: header-only types (links, devices, dirs, fifos) carry no payload whatever their size field
 * says; typeflag '\0' with a trailing '/' is a directory; GNU sparse files in PAX (GNU.sparse.*
 * 0.0, 0.1, 1.0) are entries of their real name and size whose stored segments the `sparse` map
 * places (holes read as zeros). Stricter than Go: bytes after the end-of-archive blocks must be
 * zero, the old GNU 'S' sparse type (c/storage refuses it too) is refused, and a zero block
 * followed by a non-zero block is refused. End of input exactly at a header boundary (no EOF
 * blocks) is accepted: the estargz-zstd variant's tar ends that way (docs/formats.md §3.4).
 */
import { DEFAULT_LIMITS, type Limits } from '../../core/limits.js';
import { FormatError } from '../errors.js';
import { displayName } from '../byte-string.js';
import type { ByteString, RawEntry, RawEntryType } from '../model.js';
import { paxInt, parsePaxRecords, paxTime } from './pax.js';
import { BLOCK, decodeName, fieldBytes, isZeroBlock, parseTarHeader, type TarHeader } from './tar-header.js';

/** An entry header as resolved by the scanner: a RawEntry without content chunks, plus its offsets. */
export interface ScannedEntry extends Omit<RawEntry, 'chunks' | 'digest' | 'xattrs'> {
  readonly xattrs: Map<string, Buffer>;
  /** Offset of the header block (including extension headers) in the tar stream. */
  readonly headerOffset: number;
  /** Offset of the content in the tar stream (for a sparse file: of its first stored byte). */
  readonly dataOffset: number;
  /**
   * GNU sparse file (PAX GNU.sparse.* 0.0, 0.1 or 1.0): `size` is the file's real size and the
   * content stored in the tar (what `data` events carry) is the map's segments, in order; the
   * rest of the file reads as zeros. Segments are sorted, disjoint, inside the file.
   */
  readonly sparse?: readonly SparseSegment[];
}

/** A stored run of a sparse file: `length` bytes at file offset `offset`. */
export interface SparseSegment {
  readonly offset: number;
  readonly length: number;
}

export type TarEvent =
  | { readonly kind: 'entry'; readonly entry: ScannedEntry }
  | { readonly kind: 'data'; readonly data: Buffer }
  | { readonly kind: 'end' };

const TYPES: Readonly<Record<string, RawEntryType>> = {
  '0': 'reg', '\0': 'reg', '7': 'reg', '1': 'hardlink', '2': 'symlink', '3': 'char', '4': 'block', '5': 'dir', '6': 'fifo',
};

/** Shared by every entry without xattrs (consumers copy before they change a map). */
const NO_XATTRS = new Map<string, Buffer>();

type State = 'header' | 'data' | 'pad' | 'ext' | 'zero1' | 'eof' | 'smap';

interface Pending {
  pax: Map<string, Buffer>;
  xattrs: Map<string, Buffer>;
  longName?: ByteString;
  longLink?: ByteString;
  firstOffset: number;
  /** Extension payload bytes seen for this entry so far (all 'x'/'L'/'K' headers before it). */
  extBytes: number;
  /** Bytes of the xattrs currently held for this entry (names + values). */
  xattrBytes: number;
  /** GNU sparse 0.0: the GNU.sparse.offset / GNU.sparse.numbytes records, in order. */
  sparse00?: number[];
}

/** A GNU sparse 1.0 entry whose map (at the start of its content) is being read. */
interface SparseMapRead {
  readonly hdr: TarHeader;
  readonly at: number;
  readonly pending: Pending | undefined;
  readonly name: ByteString;
  readonly realSize: number;
  /** Content bytes in the tar, map included. */
  readonly stored: number;
  buf: Buffer;
  fill: number;
}

export class TarScanner {
  readonly #limits: Limits;
  readonly #blob: string | undefined;
  #state: State = 'header';
  #offset = 0;
  readonly #hdr = Buffer.alloc(BLOCK);
  #hdrFill = 0;
  /** Bytes left in the current data / padding / extension section. */
  #left = 0;
  #padAfter = 0;
  #ext: { type: string; buf: Buffer; fill: number; entry: ByteString } | undefined;
  #pending: Pending | undefined;
  #smap: SparseMapRead | undefined;
  #entries = 0;
  #lastName = '' as ByteString;
  /** xattr bytes (names + values) of the entries emitted so far. */
  #layerXattrBytes = 0;

  constructor(limits: Limits = DEFAULT_LIMITS, blobName?: string) {
    this.#limits = limits;
    this.#blob = blobName;
  }

  /** Bytes of the stream consumed so far. */
  get offset(): number {
    return this.#offset;
  }

  get ended(): boolean {
    return this.#state === 'eof';
  }

  #err(message: string, entry: ByteString = this.#lastName): FormatError {
    return new FormatError('TAR_INVALID', message, { ...(this.#blob !== undefined ? { blob: this.#blob } : {}), entry: displayName(entry) });
  }

  push(buf: Buffer): TarEvent[] {
    const events: TarEvent[] = [];
    let p = 0;
    while (p < buf.length) {
      const avail = buf.length - p;
      switch (this.#state) {
        case 'eof': {
          for (let i = p; i < buf.length; i++) {
            if (buf[i] !== 0) throw this.#err(`non-zero data after the end-of-archive blocks at ${this.#offset + i - p}`);
          }
          this.#offset += avail;
          p = buf.length;
          break;
        }
        case 'data': {
          const n = Math.min(avail, this.#left);
          events.push({ kind: 'data', data: buf.subarray(p, p + n) });
          p += n;
          this.#offset += n;
          this.#left -= n;
          if (this.#left === 0) this.#startPad(this.#padAfter);
          break;
        }
        case 'pad': {
          const n = Math.min(avail, this.#left);
          p += n;
          this.#offset += n;
          this.#left -= n;
          if (this.#left === 0) this.#state = 'header';
          break;
        }
        case 'smap': {
          const m = this.#smap!;
          const n = Math.min(avail, m.buf.length - m.fill);
          buf.copy(m.buf, m.fill, p, p + n);
          m.fill += n;
          p += n;
          this.#offset += n;
          // The map is whole blocks of decimal lines; try after every block.
          if (m.fill % BLOCK === 0 || m.fill === m.buf.length) this.#trySparseMap(events);
          break;
        }
        case 'ext': {
          const x = this.#ext!;
          const n = Math.min(avail, x.buf.length - x.fill);
          buf.copy(x.buf, x.fill, p, p + n);
          x.fill += n;
          p += n;
          this.#offset += n;
          if (x.fill === x.buf.length) {
            this.#applyExt(x.type, x.buf, x.entry);
            this.#ext = undefined;
            this.#startPad(padOf(x.buf.length));
          }
          break;
        }
        case 'header':
        case 'zero1': {
          const n = Math.min(avail, BLOCK - this.#hdrFill);
          buf.copy(this.#hdr, this.#hdrFill, p, p + n);
          this.#hdrFill += n;
          p += n;
          if (this.#hdrFill < BLOCK) break;
          this.#hdrFill = 0;
          const at = this.#offset;
          this.#offset += BLOCK;
          this.#onBlock(at, events);
          break;
        }
      }
    }
    return events;
  }

  /**
   * Skip the current entry's content without having its bytes (tar-split, which stores headers
   * only). Returns the bytes skipped: the whole content when inside one (`n` must be exactly what
   * is left), 0 when the entry has no content (header-only types, empty files).
   */
  skipData(n: number): number {
    if (this.#state !== 'data') return 0;
    if (n !== this.#left) throw this.#err(`content of ${n} bytes where ${this.#left} are left`);
    this.#offset += n;
    this.#left = 0;
    this.#startPad(this.#padAfter);
    return n;
  }

  /** End of input. Throws TAR_INVALID if the stream stops inside an entry. */
  finish(): void {
    if (this.#state === 'eof' || this.#state === 'zero1') return;
    if (this.#state === 'header' && this.#hdrFill === 0) {
      if (this.#pending) throw this.#err('archive ends after an extension header with no entry');
      return; // plain end at a header boundary
    }
    throw this.#err(`archive truncated at ${this.#offset + this.#hdrFill} (inside ${this.#state === 'header' ? 'a header' : 'an entry'})`);
  }

  #startPad(n: number): void {
    this.#left = n;
    this.#state = n > 0 ? 'pad' : 'header';
  }

  #onBlock(at: number, events: TarEvent[]): void {
    const h = this.#hdr;
    if (isZeroBlock(h)) {
      if (this.#state === 'zero1') {
        if (this.#pending) throw this.#err('archive ends after an extension header with no entry');
        this.#state = 'eof';
        events.push({ kind: 'end' });
      } else {
        this.#state = 'zero1';
      }
      return;
    }
    if (this.#state === 'zero1') throw this.#err(`lone zero block before a header at ${at}`);
    const hdr = parseTarHeader(h, at);
    const t = hdr.typeflag;
    if (t === 'x' || t === 'g' || t === 'L' || t === 'K') {
      const what = `${t === 'x' ? 'PAX' : t === 'g' ? 'PAX global' : 'GNU long name'} header at ${at}`;
      if (hdr.size > this.#limits.maxTarHeaderExtBytes) {
        throw this.#err(`${what} of ${hdr.size} bytes exceeds the limit of ${this.#limits.maxTarHeaderExtBytes}`, hdr.name);
      }
      this.#pending ??= { pax: new Map(), xattrs: new Map(), firstOffset: at, extBytes: 0, xattrBytes: 0 };
      // Bounded as read: extension headers may repeat before one entry (each within the limit);
      // their sum per entry is held to the same limit before any of it is buffered. Global
      // headers are parsed by nobody and not kept, so only their own size is bounded.
      if (t !== 'g') {
        this.#pending.extBytes += hdr.size;
        if (this.#pending.extBytes > this.#limits.maxTarHeaderExtBytes) {
          throw this.#err(`extension headers of one entry exceed ${this.#limits.maxTarHeaderExtBytes} bytes (at ${at})`, hdr.name);
        }
      }
      if (hdr.size === 0) return;
      this.#ext = { type: t, buf: Buffer.alloc(hdr.size), fill: 0, entry: hdr.name };
      this.#state = 'ext';
      return;
    }
    this.#emitEntry(hdr, at, events);
  }

  #applyExt(type: string, buf: Buffer, entry: ByteString): void {
    const p = this.#pending!;
    if (type === 'g') return; // global headers: parsed by nobody we serve; bounded above, then ignored
    if (type === 'L' || type === 'K') {
      const s = decodeName(fieldBytes(buf, 0, buf.length));
      if (type === 'L') p.longName = s;
      else p.longLink = s;
      return;
    }
    for (const r of parsePaxRecords(buf, displayName(entry))) {
      if (r.key === 'GNU.sparse.offset' || r.key === 'GNU.sparse.numbytes') {
        // 0.0: repeated pairs, in order (a Map would keep only the last). Go refuses a map whose
        // offset/numbytes records do not alternate starting with an offset.
        const want = (p.sparse00?.length ?? 0) % 2 === 0 ? 'GNU.sparse.offset' : 'GNU.sparse.numbytes';
        if (r.key !== want) throw this.#err(`GNU sparse 0.0 map: ${r.key} where ${want} is due`, entry);
        (p.sparse00 ??= []).push(paxInt(r.value, r.key, displayName(entry)));
        continue;
      }
      if (r.key.startsWith('SCHILY.xattr.')) {
        const name = r.key.slice('SCHILY.xattr.'.length);
        if (name.length === 0) throw this.#err('empty xattr name', entry);
        const old = p.xattrs.get(name);
        p.xattrBytes += name.length + r.value.length - (old === undefined ? 0 : name.length + old.length);
        if (p.xattrBytes > this.#limits.maxXattrBytes) throw this.#err(`xattrs of one entry exceed ${this.#limits.maxXattrBytes} bytes`, entry);
        p.xattrs.set(name, r.value);
      } else if (r.value.length === 0) {
        p.pax.delete(r.key); // an empty value reverts the key to the header's value
      } else {
        p.pax.set(r.key, r.value);
      }
    }
  }

  #emitEntry(hdr: TarHeader, at: number, events: TarEvent[]): void {
    const p = this.#pending;
    this.#pending = undefined;
    const pax = p?.pax;
    let name = hdr.name;
    if (p?.longName !== undefined) name = p.longName;
    const paxPath = pax?.get('path');
    // PAX path/linkpath are raw bytes: Go's archive/tar writes a non-UTF-8 name there as is.
    if (paxPath) name = decodeName(paxPath);
    this.#lastName = name;
    let type = TYPES[hdr.typeflag];
    if (type === undefined) {
      const tf = hdr.typeflag === 'S' ? "'S' (GNU sparse)" : JSON.stringify(hdr.typeflag);
      throw this.#err(`unsupported tar entry type ${tf}`, name);
    }
    if (hdr.typeflag === '\0' && name.endsWith('/')) type = 'dir';
    if (++this.#entries > this.#limits.maxEntries) {
      throw new FormatError('TOC_TOO_LARGE', `more than ${this.#limits.maxEntries} tar entries`, {
        ...(this.#blob !== undefined ? { blob: this.#blob } : {}),
        entry: displayName(name),
      });
    }
    // The name's length is judged where it lands (normalizeEntryPath): "./" prefixes and a
    // whiteout's ".wh." do not count; its memory is bounded by maxTarHeaderExtBytes already.
    this.#layerXattrBytes += p?.xattrBytes ?? 0;
    if (this.#layerXattrBytes > this.#limits.maxLayerXattrBytes) {
      throw this.#err(`xattrs of the layer exceed ${this.#limits.maxLayerXattrBytes} bytes`, name);
    }
    const num = (key: string, fallback: number): number => {
      const v = pax?.get(key);
      return v ? paxInt(v, key, displayName(name)) : fallback;
    };
    const stored = num('size', hdr.size);
    const sparse = this.#sparseOf(pax, p, type, name, stored);
    if (sparse) {
      // A GNU sparse file's real name (1.0 stores "GNUSparseFile.0/…" in the header). Go reads
      // GNU.sparse.name only once it has called the entry sparse; on any other entry it is inert.
      const sparseName = pax?.get('GNU.sparse.name');
      if (sparseName) {
        name = decodeName(sparseName);
        this.#lastName = name;
        // Go would turn a '\0' entry so named into a directory after reading its map: refuse.
        if (name.endsWith('/')) throw this.#err('GNU sparse file named as a directory', name);
      }
    }
    if (sparse?.version === '1.0') {
      // The map is the start of the content: read it before the entry can be described.
      const room = Math.min(stored, this.#limits.maxTarHeaderExtBytes);
      this.#smap = { hdr, at, pending: p, name, realSize: sparse.realSize, stored, buf: Buffer.alloc(room), fill: 0 };
      this.#state = 'smap';
      if (room === 0) this.#trySparseMap(events);
      return;
    }
    this.#finishEntry(hdr, at, p, name, type, sparse ? { realSize: sparse.realSize, map: sparse.map!, mapBytes: 0 } : undefined, events);
  }

  /**
   * Which GNU sparse encoding (if any) the PAX records describe, with the real size and (0.x) the
   * map — decided exactly as Go's archive/tar (readGNUSparsePAXHeaders) decides it, since c/storage
   * unpacks with it: sparse iff GNU.sparse.major/minor name 0.0, 0.1 or 1.0, or (no version
   * records) a non-empty GNU.sparse.map / 0.0 offset+numbytes pairs. Any other GNU.sparse.* record,
   * and an unknown version, leave a plain entry. Size: GNU.sparse.size, else .realsize, else stored.
   */
  #sparseOf(
    pax: Map<string, Buffer> | undefined,
    p: Pending | undefined,
    type: RawEntryType,
    name: ByteString,
    stored: number,
  ): { version: '0.0' | '0.1' | '1.0'; realSize: number; map?: SparseSegment[] } | undefined {
    const str = (k: string): string => pax?.get(k)?.toString('latin1') ?? ''; // an empty value was deleted
    const major = str('GNU.sparse.major');
    const minor = str('GNU.sparse.minor');
    // Go folds 0.0 offset/numbytes pairs into GNU.sparse.map, replacing any map record.
    const map01 = p?.sparse00 === undefined ? str('GNU.sparse.map') : undefined;
    let is10: boolean;
    if (major === '0' && (minor === '0' || minor === '1')) is10 = false;
    else if (major === '1' && minor === '0') is10 = true;
    else if (major !== '' || minor !== '') return undefined; // unknown version: Go reads a plain file
    else if (p?.sparse00 !== undefined || map01 !== '') is10 = false;
    else return undefined;
    const shown = displayName(name);
    if (type !== 'reg') throw this.#err(`GNU sparse records on a ${type} entry`, name);
    const int = (k: string): number | undefined => {
      const v = pax?.get(k);
      return v ? paxInt(v, k, shown) : undefined;
    };
    const realSize = int('GNU.sparse.size') ?? int('GNU.sparse.realsize') ?? stored;
    if (is10) return { version: '1.0', realSize };
    const numbers =
      p?.sparse00 ??
      (map01 === '' ? [] : map01!.split(',').map((v) => paxInt(Buffer.from(v, 'latin1'), 'GNU.sparse.map', shown)));
    const blocks = int('GNU.sparse.numblocks');
    if (blocks === undefined) throw this.#err('GNU sparse 0.x entry without GNU.sparse.numblocks', name);
    if (blocks * 2 !== numbers.length) {
      throw this.#err(`GNU sparse map of ${numbers.length} numbers for ${blocks} blocks`, name);
    }
    const map: SparseSegment[] = [];
    for (let i = 0; i < numbers.length; i += 2) map.push({ offset: numbers[i]!, length: numbers[i + 1]! });
    return { version: p?.sparse00 !== undefined ? '0.0' : '0.1', realSize, map };
  }

  /** Parse the GNU sparse 1.0 map once enough of it is in; then describe the entry. */
  #trySparseMap(events: TarEvent[]): void {
    const m = this.#smap!;
    const text = m.buf.subarray(0, m.fill).toString('latin1');
    const lines = text.split('\n');
    const complete = lines.length - 1; // the last piece has no newline yet
    const bad = (why: string): FormatError => this.#err(`GNU sparse 1.0 map: ${why}`, m.name);
    if (complete < 1) {
      if (m.fill === m.buf.length) throw bad('no entry count');
      return;
    }
    const num = (l: string): number => {
      if (!/^\d{1,16}$/.test(l) || !Number.isSafeInteger(Number(l))) throw bad(`${JSON.stringify(l.slice(0, 20))} is not a number`);
      return Number(l);
    };
    const count = num(lines[0]!);
    if (complete < 1 + 2 * count) {
      if (m.fill === m.buf.length) throw bad(`map of ${count} entries longer than ${m.buf.length} bytes`);
      return;
    }
    const map: SparseSegment[] = [];
    for (let i = 0; i < count; i++) map.push({ offset: num(lines[1 + 2 * i]!), length: num(lines[2 + 2 * i]!) });
    let used = 0;
    for (let i = 0; i < 1 + 2 * count; i++) used += lines[i]!.length + 1;
    const mapBytes = used + padOf(used);
    if (mapBytes > m.stored) throw bad(`map of ${mapBytes} bytes in ${m.stored} bytes of content`);
    if (mapBytes > m.fill) {
      if (m.fill === m.buf.length) throw bad('map padding past the limit');
      return; // its padding is still to come
    }
    this.#smap = undefined;
    const surplus = m.buf.subarray(mapBytes, m.fill); // segment bytes read along with the map's last block
    this.#finishEntry(m.hdr, m.at, m.pending, m.name, 'reg', { realSize: m.realSize, map, mapBytes }, events);
    if (surplus.length > 0) {
      this.#offset -= surplus.length; // counted once already, as map bytes
      events.push(...this.push(Buffer.from(surplus)));
    }
  }

  #finishEntry(
    hdr: TarHeader,
    at: number,
    p: Pending | undefined,
    name: ByteString,
    type: RawEntryType,
    sparse: { realSize: number; map: SparseSegment[]; mapBytes: number } | undefined,
    events: TarEvent[],
  ): void {
    const pax = p?.pax;
    const num = (key: string, fallback: number): number => {
      const v = pax?.get(key);
      return v ? paxInt(v, key, displayName(name)) : fallback;
    };
    let size = num('size', hdr.size);
    let dataLen = type === 'reg' ? size : 0;
    let segments: SparseSegment[] | undefined;
    if (sparse) {
      dataLen = size - sparse.mapBytes;
      segments = checkSparseMap(sparse.map, sparse.realSize, dataLen, (why) => this.#err(`GNU sparse map: ${why}`, name));
      size = sparse.realSize;
    }
    let linkName = hdr.linkName;
    if (p?.longLink !== undefined) linkName = p.longLink;
    const paxLink = pax?.get('linkpath');
    if (paxLink) linkName = decodeName(paxLink);
    let [mtimeSec, mtimeNsec] = [hdr.mtime, 0];
    const mt = pax?.get('mtime');
    if (mt) [mtimeSec, mtimeNsec] = paxTime(mt, 'mtime', displayName(name));
    // Header-only types carry no payload whatever the size field says (Go archive/tar semantics).
    if (type !== 'reg') size = 0;
    const link = type === 'symlink' || type === 'hardlink';
    if (link && linkName === '') throw this.#err(`${type} without a target`, name);
    const entry: ScannedEntry = {
      name,
      type,
      mode: hdr.mode,
      uid: num('uid', hdr.uid),
      gid: num('gid', hdr.gid),
      size,
      mtimeSec,
      mtimeNsec,
      ...(link ? { linkName } : {}),
      devMajor: type === 'char' || type === 'block' ? hdr.devMajor : 0,
      devMinor: type === 'char' || type === 'block' ? hdr.devMinor : 0,
      xattrs: p !== undefined && p.xattrs.size > 0 ? p.xattrs : NO_XATTRS,
      headerOffset: p?.firstOffset ?? at,
      dataOffset: at + BLOCK + (sparse?.mapBytes ?? 0),
      ...(segments ? { sparse: segments } : {}),
    };
    events.push({ kind: 'entry', entry });
    if (dataLen > 0) {
      this.#state = 'data';
      this.#left = dataLen;
      this.#padAfter = padOf(dataLen);
    } else {
      this.#state = 'header';
    }
  }
}

/**
 * A sparse map as Go's archive/tar accepts it: segments in order, not overlapping, inside the
 * file, and their lengths summing to the content stored. Zero-length segments (GNU tar ends a map
 * with one at the real size) are dropped.
 */
function checkSparseMap(map: readonly SparseSegment[], realSize: number, stored: number, bad: (why: string) => FormatError): SparseSegment[] {
  const out: SparseSegment[] = [];
  let end = 0;
  let total = 0;
  for (const s of map) {
    if (s.offset < end) throw bad(`segment at ${s.offset} overlaps or goes backwards (previous ends at ${end})`);
    if (s.offset + s.length > realSize) throw bad(`segment ${s.offset}+${s.length} past the real size ${realSize}`);
    end = s.offset + s.length;
    total += s.length;
    if (s.length > 0) out.push(s);
  }
  if (total !== stored) throw bad(`segments hold ${total} bytes, the entry stores ${stored}`);
  return out;
}

function padOf(n: number): number {
  const r = n % BLOCK;
  return r === 0 ? 0 : BLOCK - r;
}
