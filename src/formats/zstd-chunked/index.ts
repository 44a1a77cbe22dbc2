/** zstd:chunked (containers/storage) layer reader: see reader.ts. */
export { openZstdChunked, loadZstdChunkedRecord } from './reader.js';
export {
  ANN_MANIFEST_CHECKSUM,
  ANN_MANIFEST_POSITION,
  ANN_TARSPLIT_POSITION,
  ANN_OLD_MANIFEST_CHECKSUM,
  ANN_OLD_MANIFEST_POSITION,
  FOOTER_MAGIC,
  OLD_FOOTER_MAGIC,
  parseFooter,
  parseOldFooter,
  parseManifestPosition,
  parseTarSplitPosition,
  type Footer,
  type Position,
} from './footer.js';
export { parseTocManifest, type TocEntry, type TocManifest } from './manifest.js';
export { parseTarSplit, bindTocToTar, type TarSplitSummary } from './tar-split.js';
export { decodeZstdExact } from '../decompress.js';
