/** Plain tar / tar+gzip / tar+zstd layers (docs/formats.md §1.2, §5): scanner, reader, record loader. */
export { openPlainLayer } from './plain-layer.js';
export { loadPlainRecord } from './plain-record.js';
