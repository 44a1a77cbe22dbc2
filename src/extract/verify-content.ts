/**
 * Read and verify every chunk of every regular file of a layer (each hardlinked inode once), with
 * bounded concurrency and bounded memory, through readVerifiedChunks (the only content path; it
 * hashes every chunk against its digest). Any mismatch rejects the whole walk.
 *
 * Files are taken in blob order (of their first chunk) and their chunks cut into batches of
 * ≤ BATCH_BYTES that run across file boundaries, so a layer of many small files costs a few large
 * reads instead of one per file: when a batch's compressed spans lie close together, the whole
 * extent is read at once and readVerifiedChunks works on a view of it. Up to CONCURRENCY batches
 * are fetched and decoded at a time, but onChunk sees them strictly in batch order (and within a
 * file, in chunk order), so a consumer may create a file on its first chunk.
 */
import type { RandomAccessBlob } from '../core/blob.js';
import { readVerifiedChunks, type ByteString, type ChunkRef, type ChunkRequest, type LayerIndex, type LayerNode } from '../formats/index.js';
import { mapLimit } from './map-limit.js';

export const CONCURRENCY = 4;
const BATCH_BYTES = 8 * 1024 * 1024;
/** Read a batch's extent in one go only if it is at most this much larger than its spans. */
const EXTENT_SLACK = 1024 * 1024;

export interface VerifiedFile {
  readonly path: ByteString;
  readonly node: LayerNode;
}

/** Regular files with content, one per inode, in walk order, with their first path. */
export function contentFiles(index: LayerIndex): VerifiedFile[] {
  const seen = new Set<number>();
  const out: VerifiedFile[] = [];
  for (const [path, node] of index.walk()) {
    if (node.type !== 'reg' || node.size === 0 || seen.has(node.ino)) continue;
    seen.add(node.ino);
    out.push({ path, node });
  }
  return out;
}

interface Item {
  readonly file: VerifiedFile;
  readonly chunk: ChunkRef;
}

export async function forEachVerifiedChunk(
  blob: RandomAccessBlob,
  index: LayerIndex,
  files: readonly VerifiedFile[],
  onChunk: (file: VerifiedFile, chunk: ChunkRef, data: Buffer) => Promise<void> | void,
  signal?: AbortSignal,
): Promise<void> {
  const info = { compression: index.compression, blobName: blob.name };
  const ordered = [...files].sort((a, b) => (a.node.chunks[0]?.span.offset ?? 0) - (b.node.chunks[0]?.span.offset ?? 0));
  const batches: Item[][] = [];
  let batch: Item[] = [];
  let bytes = 0;
  for (const file of ordered) {
    for (const chunk of file.node.chunks) {
      if (batch.length > 0 && bytes + chunk.size > BATCH_BYTES) {
        batches.push(batch);
        batch = [];
        bytes = 0;
      }
      batch.push({ file, chunk });
      bytes += chunk.size;
    }
  }
  if (batch.length > 0) batches.push(batch);

  // Delivery in batch order: batch i hands its chunks over once batch i-1 has.
  // A failed batch fails every later one (they would wait for it forever otherwise).
  const delivered: Promise<void>[] = [];
  const settle: { resolve: () => void; reject: (e: unknown) => void }[] = [];
  for (let i = 0; i < batches.length; i++) {
    const p = new Promise<void>((resolve, reject) => settle.push({ resolve, reject }));
    p.catch(() => undefined); // observed by the next batch; never an unhandled rejection
    delivered.push(p);
  }
  await mapLimit(batches, CONCURRENCY, async (items, i) => {
    try {
      const requests: ChunkRequest[] = items.map((it) => ({ chunk: it.chunk, entry: it.file.path }));
      const datas = await readVerifiedChunks(viewOf(blob, items, signal) ?? blob, info, requests, signal);
      if (i > 0) await delivered[i - 1];
      for (let k = 0; k < items.length; k++) await onChunk(items[k]!.file, items[k]!.chunk, datas[k]!);
      settle[i]!.resolve();
    } catch (e) {
      for (let j = i; j < settle.length; j++) settle[j]!.reject(e);
      throw e;
    }
  });
}

/**
 * A blob view over one read of the extent covering `items`' compressed spans, or undefined when
 * they are too scattered for that to pay (then readVerifiedChunks reads span by span). The view
 * serves only that extent; bytes are as unverified as the blob's — readVerifiedChunks checks them.
 */
function viewOf(blob: RandomAccessBlob, items: readonly Item[], signal?: AbortSignal): RandomAccessBlob | undefined {
  let lo = Infinity;
  let hi = 0;
  let spans = 0;
  for (const { chunk } of items) {
    if (chunk.zeros) continue;
    lo = Math.min(lo, chunk.span.offset);
    hi = Math.max(hi, chunk.span.end);
    spans += chunk.span.end - chunk.span.offset;
  }
  if (hi <= lo || items.length < 2 || hi - lo > spans + EXTENT_SLACK) return undefined;
  let extent: Promise<Buffer> | undefined;
  return {
    size: blob.size,
    name: blob.name,
    read: async (offset: number, length: number) => {
      if (offset < lo || offset + length > hi) return blob.read(offset, length, signal);
      extent ??= blob.read(lo, hi - lo, signal);
      return (await extent).subarray(offset - lo, offset - lo + length);
    },
  };
}
