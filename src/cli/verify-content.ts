/**
 * Read and verify every chunk of every regular file of a layer (each hardlinked inode once), with
 * bounded concurrency and bounded memory: files are processed by CONCURRENCY workers, each fetching
 * its file's chunks in batches of ≤ BATCH_BYTES through readVerifiedChunks (the only content path;
 * it hashes every chunk against its digest). Any mismatch rejects the whole walk.
 */
import type { RandomAccessBlob } from '../core/blob.js';
import { readVerifiedChunks, type ChunkRef, type LayerIndex, type LayerNode } from '../formats/index.js';
import { mapLimit } from './map-limit.js';

export const CONCURRENCY = 4;
const BATCH_BYTES = 8 * 1024 * 1024;

export interface VerifiedFile {
  readonly path: string;
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

export async function forEachVerifiedChunk(
  blob: RandomAccessBlob,
  index: LayerIndex,
  files: readonly VerifiedFile[],
  onChunk: (file: VerifiedFile, chunk: ChunkRef, data: Buffer) => Promise<void> | void,
  signal?: AbortSignal,
): Promise<void> {
  const info = { compression: index.compression, blobName: blob.name };
  await mapLimit(files, CONCURRENCY, async (f) => {
    const chunks = f.node.chunks;
    for (let i = 0; i < chunks.length; ) {
      let j = i;
      let bytes = 0;
      while (j < chunks.length && (j === i || bytes + chunks[j]!.size <= BATCH_BYTES)) bytes += chunks[j++]!.size;
      const batch = chunks.slice(i, j);
      const datas = await readVerifiedChunks(blob, info, batch.map((chunk) => ({ chunk, entry: f.path })), signal);
      for (let k = 0; k < batch.length; k++) await onChunk(f, batch[k]!, datas[k]!);
      i = j;
    }
  });
}
