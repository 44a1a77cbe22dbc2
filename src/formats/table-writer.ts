/**
 * The layer table's buffer while it is packed: sized and laid out from its section counts (layout in
 * index-table.ts), header written, each section a u32 view, and a cursor that appends names, link
 * targets and xattrs to the string section.
 */
import { CHUNK_BYTES, DIRENT_BYTES, NODE_BYTES, TABLE_HEADER, TABLE_MAGIC, TABLE_VERSION, XATTR_BYTES } from './index-table.js';

export interface TableCounts {
  readonly nodes: number;
  readonly chunks: number;
  readonly dirents: number;
  readonly xattrs: number;
  readonly stringBytes: number;
}

export class TableWriter {
  readonly table: Buffer;
  /** u32 words of each section. */
  readonly nodes: Uint32Array;
  readonly chunks: Uint32Array;
  readonly dirents: Uint32Array;
  readonly xattrs: Uint32Array;
  /** Byte offset of the chunk section (its digests are copied in as bytes). */
  readonly chunkOffset: number;
  readonly #stringOffset: number;
  readonly #stringBytes: number;
  /** String bytes written so far. */
  #written = 0;

  constructor(c: TableCounts) {
    const nodeOffset = TABLE_HEADER;
    const chunkOffset = nodeOffset + c.nodes * NODE_BYTES;
    const direntOffset = chunkOffset + c.chunks * CHUNK_BYTES;
    const xattrOffset = direntOffset + c.dirents * DIRENT_BYTES;
    const stringOffset = xattrOffset + c.xattrs * XATTR_BYTES;
    const table = Buffer.alloc(stringOffset + c.stringBytes);
    const words = (offset: number, bytes: number): Uint32Array => new Uint32Array(table.buffer, table.byteOffset + offset, bytes / 4);
    words(0, TABLE_HEADER).set([TABLE_MAGIC, TABLE_VERSION, c.nodes, c.dirents, c.xattrs, c.chunks, c.stringBytes, 0]);
    this.table = table;
    this.nodes = words(nodeOffset, c.nodes * NODE_BYTES);
    this.chunks = words(chunkOffset, c.chunks * CHUNK_BYTES);
    this.dirents = words(direntOffset, c.dirents * DIRENT_BYTES);
    this.xattrs = words(xattrOffset, c.xattrs * XATTR_BYTES);
    this.chunkOffset = chunkOffset;
    this.#stringOffset = stringOffset;
    this.#stringBytes = c.stringBytes;
  }

  /** Append `s` to the string section; its offset and byte length go to `words[at]` and `words[at + 1]`. */
  putString(s: string, encoding: 'latin1' | 'utf8', words: Uint32Array, at: number): void {
    const len = this.table.write(s, this.#stringOffset + this.#written, encoding);
    words[at] = this.#written;
    words[at + 1] = len;
    this.#written += len;
  }

  /** Append raw bytes, as putString. */
  putBytes(v: Buffer, words: Uint32Array, at: number): void {
    v.copy(this.table, this.#stringOffset + this.#written);
    words[at] = this.#written;
    words[at + 1] = v.length;
    this.#written += v.length;
  }

  /** The packed table, once the string section is exactly full. */
  finish(): Buffer {
    if (this.#written !== this.#stringBytes) throw new Error(`layer table strings: wrote ${this.#written} of ${this.#stringBytes} bytes`);
    return this.table;
  }
}
