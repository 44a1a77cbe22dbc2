/**
 * Export a resolved image (every platform) into an OCI layout on the dfs: top-level index or
 * manifest, platform manifests, configs and layer blobs, each verified as it is written.
 */
import type { Digest } from '../../core/digest.js';
import type { Logger } from '../../core/log.js';
import type { ImageReference } from '../reference.js';
import type { ResolvedImage } from '../source.js';
import { layoutDir, REF_NAME_ANNOTATION } from './oci-layout.js';
import { OciLayoutWriter } from './layout-writer.js';

export type BlobStreamer = (digest: Digest) => Promise<AsyncIterable<Uint8Array>>;

export interface ExportResult {
  readonly dir: string;
  readonly blobsWritten: number;
  readonly blobsSkipped: number;
  readonly bytesWritten: number;
}

export async function exportImage(image: ResolvedImage, ref: ImageReference, root: string, stream: BlobStreamer, logger: Logger): Promise<ExportResult> {
  const dir = layoutDir(root, ref);
  const w = new OciLayoutWriter(dir);
  await w.init();
  let blobsWritten = 0;
  let blobsSkipped = 0;
  let bytesWritten = 0;
  const put = async (d: Digest, data: Uint8Array | (() => Promise<AsyncIterable<Uint8Array>>), size?: number): Promise<void> => {
    if (await w.has(d, size)) {
      blobsSkipped++;
      return;
    }
    bytesWritten += await w.writeBlob(d, data instanceof Uint8Array ? data : await data(), size);
    blobsWritten++;
    logger.info('export.blob', { digest: d, size });
  };
  for (const m of image.manifests) {
    for (const l of m.layers) await put(l.digest, () => stream(l.digest), l.size);
    await put(m.configDigest, m.configBytes);
    await put(m.digest, m.manifestBytes);
  }
  const topBytes = image.indexBytes ?? image.manifests[0]!.manifestBytes;
  await put(image.digest, topBytes);
  await w.addToIndex({
    mediaType: image.mediaType,
    digest: image.digest,
    size: topBytes.length,
    ...(ref.tag !== undefined ? { annotations: { [REF_NAME_ANNOTATION]: ref.tag } } : {}),
  });
  return { dir, blobsWritten, blobsSkipped, bytesWritten };
}
