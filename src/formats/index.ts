/** Public API of the formats folder: the layer model, opening layers, verified content. */
export type { ByteString, ChunkRef, LayerFormat, LayerIndex, LayerNode } from './model.js';
export { byteStringFromText, displayName, isUtf8, toBuffer, toText } from './byte-string.js';
export type { OpenedLayer, OpenLayerOptions } from './layer-reader.js';
export { openLayer, resolveLayerFormat } from './open-layer.js';
export { isTocFormat } from './detect.js';
export { readVerifiedChunks, type ChunkRequest } from './chunk-reader.js';
export { verifyFullPass } from './full-pass.js';
