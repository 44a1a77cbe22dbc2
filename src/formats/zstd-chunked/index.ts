/** zstd:chunked (containers/storage) layer reader: see reader.ts. */
export { openZstdChunked, loadZstdChunkedRecord } from './reader.js';
export { decodeZstdExact } from '../decompress.js';
