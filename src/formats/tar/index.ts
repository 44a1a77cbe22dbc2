/** Plain tar / tar+gzip / tar+zstd layers (docs/formats.md §1.2, §5): scanner, reader, record loader. */
export { openPlainLayer, plainFormatOf, defaultMaxUncompressed, type PlainLayerOptions } from './plain-layer.js';
export { loadPlainRecord, PLAIN_CHUNK_BYTES } from './plain-record.js';
export { TarScanner, type ScannedEntry, type TarEvent } from './tar-scanner.js';
export { parseTarHeader, type TarHeader } from './tar-header.js';
