/** Public API of the formats folder: the layer model, opening layers, verified content, errors. */
export type {
  ByteString,
  ChunkRef,
  CompressedSpan,
  Compression,
  LayerFormat,
  LayerIndex,
  LayerNode,
  NodeType,
  RawEntry,
  RawEntryType,
} from './model.js';
export { STORAGE_COMPRESSION } from './model.js';
export { asByteString, byteStringFromText, byteStringOf, displayName, goJsonMangle, isUtf8, toBuffer, toText } from './byte-string.js';
export type {
  LayerDescriptor,
  LayerReader,
  LayerRecord,
  LayerRecordLoader,
  OpenedLayer,
  OpenLayerOptions,
} from './layer-reader.js';
export { openLayer, loadLayerRecord, resolveLayerFormat } from './open-layer.js';
export { detectFormat, compressionOfFormat, isTocFormat, type DetectedFormat } from './detect.js';
export { readVerifiedChunks, readVerifiedChunk, type ChunkRequest, type ChunkSourceInfo } from './chunk-reader.js';
export { FormatError, type FormatErrorCode } from './errors.js';
export { normalizeEntryPath } from './overlay-view.js';
export { verifyFullPass, type FullPassOptions, type FullPassResult } from './full-pass.js';
