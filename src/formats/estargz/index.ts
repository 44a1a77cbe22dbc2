/** eStargz family readers: gzip eStargz, legacy stargz, estargz-zstd (docs/formats.md §2, §3). */
export { openEStargz } from './reader.js';
export { openEStargzZstd } from './zstd-reader.js';
export { loadEStargzRecord } from './record.js';
export { TOC_DIGEST_ANNOTATION } from './toc-member.js';
