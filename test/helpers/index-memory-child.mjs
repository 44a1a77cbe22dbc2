// Child process of the index-memory test and bench: open one layer file with the built dist/ code,
// keep its index (and, with --table, the table the native backend publishes), and print what it cost:
//   {"baseKiB", "peakKiB", "keptKiB", "heapKiB", "externalKiB", "seconds", "nodes"} or {"error": "..."}
// baseKiB = RSS after the imports (before the open); peakKiB = VmHWM; keptKiB = RSS after two GCs with
// the index still referenced; keptBytes = JS heap + array buffers after those GCs over the same before
// the open (what the index itself holds). Run with --expose-gc.
import { readFileSync } from 'node:fs';

const [file, tocDigest, mediaType, table] = process.argv.slice(2).filter((a) => a !== '--worker');
// --worker: open as the daemon does, in the capped index worker (formats/index-worker.ts)
const inWorker = process.argv.includes('--worker');
const root = new URL('../../dist/', import.meta.url);
const { FileBlob } = await import(new URL('core/blob.js', root).href);
const { openLayer: openInProcess } = await import(new URL('formats/open-layer.js', root).href);
const { IndexWorkers } = await import(new URL('formats/index-worker.js', root).href);
const workers = new IndexWorkers();
const openLayer = inWorker ? (blob, options) => workers.openLayer(blob, options) : openInProcess;
const { encodeLayerTable } = await import(new URL('fuse/layer-table.js', root).href);
const status = (key) => Number(/(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8').split('\n').find((l) => l.startsWith(key)))[1]);
globalThis.gc(); globalThis.gc();
const baseKiB = status('VmRSS:');
const m0 = process.memoryUsage();
const t0 = process.hrtime.bigint();
let kept;
try {
  const blob = await FileBlob.open(file);
  const opened = await openLayer(blob, {
    ...(tocDigest && tocDigest !== '-' ? { expectedTocDigest: tocDigest } : {}),
    ...(mediaType && mediaType !== '-' ? { descriptor: { mediaType } } : {}),
  });
  await blob.close();
  kept = { index: opened.index, table: table === '--table' ? encodeLayerTable(opened.index) : undefined };
} catch (e) {
  process.stdout.write(JSON.stringify({ error: `${e.code ?? ''} ${e.message}`.trim() }));
  process.exit(0);
}
const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
// V8 keeps the subject of the last RegExp match (the legacy RegExp.$_ statics): after a zstd:chunked
// open that is the whole TOC text, one string per process, not per layer. Reset it so it is not
// counted as the index's.
/x/.exec('x');
globalThis.gc(); globalThis.gc();
const m = process.memoryUsage();
process.stdout.write(JSON.stringify({
  baseKiB, peakKiB: status('VmHWM:'), keptKiB: status('VmRSS:'), heapKiB: Math.round(m.heapUsed / 1024),
  externalKiB: Math.round(m.external / 1024), seconds,
  // what the index keeps: JS heap and array buffers (the table), over the state before the open
  keptBytes: m.heapUsed + m.arrayBuffers - (m0.heapUsed + m0.arrayBuffers), nodes: kept.index.nodeCount ?? kept.index.nodes.length, tableKiB: Math.round((kept.index.table ?? kept.table ?? { length: 0 }).length / 1024),
}));
