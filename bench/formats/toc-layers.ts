// Helper of bench/formats/inspect-extract.mjs (not a benchmark itself; run with `npx vite-node`):
//   npx vite-node bench/formats/toc-layers.ts LAYER.tar
// Re-packs the entries of the plain tar LAYER.tar as a zstd:chunked blob (LAYER.tar.zstd-chunked,
// 64 KiB chunks: containers/storage's rolling checksum averages about that) and as an eStargz blob
// (LAYER.tar.estargz, gzip, 4 MiB chunks: the estargz default), with the fixture writers of
// test/helpers/writers, and writes LAYER.tar.toc-layers.json with their TOC digests and diffIDs.
import { readFileSync, writeFileSync } from 'node:fs';
import { buildEStargz } from '../../test/helpers/writers/estargz.js';
import { buildZstdChunked } from '../../test/helpers/writers/zstd-chunked.js';
import { tarEntries } from './tar-entries.js';

const tarPath = process.argv.filter((a) => a.endsWith('.tar')).at(-1);
if (!tarPath) throw new Error('usage: toc-layers.ts LAYER.tar');
const entries = tarEntries(readFileSync(tarPath), tarPath);

const zc = buildZstdChunked(entries, { chunkSize: 64 * 1024 });
writeFileSync(`${tarPath}.zstd-chunked`, zc.blob);
// eStargz's TOC carries whole seconds only: drop the fractions so tar -x and extract agree.
const es = buildEStargz(entries.map(({ mtimeNsec: _, ...e }) => e), { compression: 'gzip' });
writeFileSync(`${tarPath}.estargz`, es.blob);
writeFileSync(
  `${tarPath}.toc-layers.json`,
  JSON.stringify({
    'zstd-chunked': { tocDigest: zc.tocDigest, diffId: zc.diffId },
    estargz: { tocDigest: es.tocDigest, diffId: es.diffId },
  }),
);
console.log(`${entries.length} entries: zstd:chunked ${zc.blob.length} bytes, eStargz ${es.blob.length} bytes`);
