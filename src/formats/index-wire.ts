/**
 * What crosses the thread boundary of the index worker (index-worker.ts): a built index as its table
 * and typed columns (transferred, never copied), errors as their code, message and context, a record
 * as its JSON bytes. Both sides use these, so what goes in is what comes out.
 */
import { LazyAlsError, type ErrorCode, type ErrorContext } from '../core/errors.js';
import { FormatError, type FormatErrorCode } from './errors.js';
import { TableLayerIndex, type TableExtras, type TableMeta } from './index-table.js';
import type { LayerIndex } from './model.js';

/** A TableLayerIndex taken apart: its buffers are transferred to the receiving thread. */
export interface WireIndex {
  readonly table: ArrayBuffer;
  readonly spans: Float64Array;
  readonly nodeFlags: Uint8Array;
  readonly fileDigests: TableExtras['fileDigests'];
  readonly chunkDigests: TableExtras['chunkDigests'];
  readonly meta: TableMeta;
}

export interface WireError {
  readonly code?: string;
  readonly message: string;
  readonly context?: ErrorContext;
}

/** Own the bytes of `b` in an ArrayBuffer of exactly their length (transferable without taking others' memory). */
function ownBuffer(b: Uint8Array): ArrayBuffer {
  if (b.byteOffset === 0 && b.byteLength === b.buffer.byteLength && b.buffer instanceof ArrayBuffer) return b.buffer;
  const copy = new Uint8Array(b.byteLength);
  copy.set(b);
  return copy.buffer;
}

/** The index and the list of buffers to transfer with it. */
export function indexToWire(index: LayerIndex): { wire: WireIndex; transfer: ArrayBuffer[] } {
  if (!(index instanceof TableLayerIndex)) throw new Error('only a table index crosses threads');
  const table = ownBuffer(index.table);
  const spans = new Float64Array(ownBuffer(new Uint8Array(index.extras.spans.buffer, index.extras.spans.byteOffset, index.extras.spans.byteLength)));
  const nodeFlags = new Uint8Array(ownBuffer(index.extras.nodeFlags));
  const meta: TableMeta = {
    format: index.format,
    compression: index.compression,
    blobSize: index.blobSize,
    ...(index.blobDigest !== undefined ? { blobDigest: index.blobDigest } : {}),
    ...(index.tocDigest !== undefined ? { tocDigest: index.tocDigest } : {}),
    ...(index.diffId !== undefined ? { diffId: index.diffId } : {}),
    ...(index.uncompressedSize !== undefined ? { uncompressedSize: index.uncompressedSize } : {}),
    ...(index.prefetchEnd !== undefined ? { prefetchEnd: index.prefetchEnd } : {}),
    uids: index.uids,
    gids: index.gids,
  };
  const wire = { table, spans, nodeFlags, fileDigests: index.extras.fileDigests, chunkDigests: index.extras.chunkDigests, meta };
  return { wire, transfer: [table, spans.buffer as ArrayBuffer, nodeFlags.buffer as ArrayBuffer] };
}

export function indexFromWire(w: WireIndex): TableLayerIndex {
  return new TableLayerIndex(
    Buffer.from(w.table),
    { spans: w.spans, nodeFlags: w.nodeFlags, fileDigests: w.fileDigests, chunkDigests: w.chunkDigests },
    w.meta,
  );
}

export function errorToWire(e: unknown): WireError {
  if (e instanceof LazyAlsError) return { code: e.code, message: messageOf(e), context: e.context };
  return { message: e instanceof Error ? e.message : String(e) };
}

/** The message without the context suffix LazyAlsError appends (it is appended again on rebuild). */
function messageOf(e: LazyAlsError): string {
  const full = e.message;
  const i = full.lastIndexOf(' (');
  return i > 0 && full.endsWith(')') && Object.keys(e.context).length > 0 ? full.slice(0, i) : full;
}

const FORMAT_CODES = new Set<string>([
  'FOOTER_INVALID', 'FOOTER_TRUNCATED', 'TOC_OUT_OF_RANGE', 'TOC_TOO_LARGE', 'TOC_DIGEST_MISMATCH', 'TOC_MALFORMED', 'TOC_MISSING',
  'ENTRY_INVALID', 'ENTRY_PATH_UNSAFE', 'ENTRY_DUPLICATE', 'ENTRY_LINK_INVALID', 'CHUNK_INVALID', 'CHUNK_DIGEST_MISMATCH',
  'DECOMPRESS_FAILED', 'DECOMPRESS_LIMIT', 'TAR_INVALID', 'BLOB_DIGEST_MISMATCH', 'DIFFID_MISMATCH', 'FORMAT_UNKNOWN', 'FORMAT_CONFLICT',
] satisfies FormatErrorCode[]);

/** The same typed error on this side: a FormatError for format codes, a LazyAlsError for the others. */
export function errorFromWire(w: WireError): Error {
  if (w.code === undefined) return new Error(w.message);
  if (FORMAT_CODES.has(w.code)) return new FormatError(w.code as FormatErrorCode, w.message, w.context ?? {});
  return new LazyAlsError(w.code as ErrorCode, w.message, w.context ?? {});
}
