/**
 * The cold path alone (issue 11), each figure against `curl` of the same layer blob in the same run,
 * medians of BENCH_REPEAT (default 3) runs, each on a fresh store:
 *   - a 64 MiB file read through the store right after its layer is resolved (chunk cache empty,
 *     kernel caches dropped), eStargz and zstd:chunked; bytes fetched ÷ bytes needed (the layer
 *     holds little besides that file, so needed = the blob);
 *   - the reference store (stargz-store) reading the same eStargz file, when it can run here.
 *
 *   npx vite-node bench/e2e/cold-read.ts            (root, /dev/fuse)
 *   BENCH_FORMATS=estargz …                         (default: estargz,zstdchunked)
 *   BENCH_CPU_PROF=DIR …                            (the daemons run with node --cpu-prof into DIR)
 */
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { makeTestDir, spawnCollect } from '../../test/helpers/podman.js';
import { pushImage } from '../../test/helpers/registry-push.js';
import { startRegistry, type RegistryHandle } from '../../test/helpers/registry.js';
import { BIG_SIZE, bigEntries, buildLayer, MT_TAR_ZSTD, P, refElem, sha256 } from '../../test/e2e/images.js';
import { buildZstdChunked } from '../../test/helpers/writers/zstd-chunked.js';
import { blobBytes, LAZY_ALS_AGENT, LogCursor } from '../../test/e2e/registry-log.js';
import { startStore } from '../../test/e2e/store.js';
import { cpuProfWrap, curlMs, dropCaches, log, median, readAll, REPEAT, report, runMain, skip, timed } from './report.js';
import { referenceStoreMissing, startReferenceStore } from './reference-store.js';

const FORMATS = (process.env['BENCH_FORMATS'] ?? 'estargz,zstdchunked').split(',');

interface BigLayer {
  bytes: Buffer;
  mediaType: string;
  diffId: string;
  annotations: Record<string, string>;
  /** The key the layer is looked up by (TOC digest). */
  key: string;
}

/** The 64 MiB file's layer: eStargz (4 MiB chunks, the writer's default) or zstd:chunked (64 KiB chunks, like podman's). */
function bigLayer(format: string): BigLayer {
  if (format === 'zstdchunked') {
    const z = buildZstdChunked(bigEntries(), { chunkSize: 64 * 1024 });
    return { bytes: z.blob, mediaType: MT_TAR_ZSTD, diffId: z.diffId, annotations: z.annotations, key: z.tocDigest };
  }
  const l = buildLayer('big', 'estargz');
  return { bytes: l.bytes, mediaType: l.mediaType, diffId: l.diffId, annotations: l.annotations!, key: l.tocDigest! };
}

interface Pushed {
  ref: string;
  big: BigLayer;
  url: string;
}

async function push(reg: RegistryHandle, format: string): Promise<Pushed> {
  const base = buildLayer('base', 'estargz');
  const big = bigLayer(format);
  await pushImage(reg, 'bench/cold', format, { layers: [base, big].map((l) => ({ bytes: l.bytes, mediaType: l.mediaType, diffId: l.diffId, annotations: l.annotations! })) });
  return { ref: `${reg.host}/bench/cold:${format}`, big, url: `${reg.url}/v2/bench/cold/blobs/${sha256(big.bytes)}` };
}

/** utime + stime of a process and all its threads, ms (less sensitive to a loaded machine than wall time). */
function cpuMs(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const x = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return ((Number(x[11]) + Number(x[12])) * 1000) / 100; // fields 14 and 15, in USER_HZ (100)
}

/** One run on a fresh store: resolve the layer (footer, TOC, index: timed), drop caches, read the file (timed). */
async function oneRun(work: string, reg: RegistryHandle, p: Pushed, tag: string): Promise<{ resolveMs: number; readMs: number; cpuMs: number; fetched: number }> {
  const wrap = cpuProfWrap();
  const s = await startStore({ dir: join(work, tag), logLevel: 'warn', ...(wrap ? { wrap } : {}) });
  try {
    const layerDir = join(s.mountpoint, refElem(p.ref), p.big.key);
    const cursor = new LogCursor(reg.logPath);
    await dropCaches();
    const [resolveMs] = await timed(() => readFile(join(layerDir, 'info')));
    await dropCaches();
    const us0 = process.hrtime.bigint() / 1000n; // same monotonic clock as the daemon's --cpu-prof
    const cpu0 = cpuMs(s.pid);
    const [readMs, n] = await timed(() => readAll(join(layerDir, 'diff', P.big)));
    const cpu = cpuMs(s.pid) - cpu0;
    if (wrap) log(`profile window (µs, monotonic): ${us0} ${process.hrtime.bigint() / 1000n}`);
    if (n !== BIG_SIZE) throw new Error(`read ${n} bytes`);
    return { resolveMs, readMs, cpuMs: cpu, fetched: blobBytes(cursor.since(), { agent: LAZY_ALS_AGENT }).get(sha256(p.big.bytes)) ?? 0 };
  } finally {
    await s.stop();
  }
}

async function measure(work: string, reg: RegistryHandle, format: string): Promise<void> {
  const p = await push(reg, format);
  const runs: { resolveMs: number; readMs: number; cpuMs: number; fetched: number; curl: number }[] = [];
  for (let i = 0; i < REPEAT; i++) {
    const r = await oneRun(work, reg, p, `${format}-${i}`);
    await dropCaches(); // curl too starts with the registry's files out of the page cache
    const curl = await curlMs(p.url);
    runs.push({ ...r, curl });
    log(`${format} run ${i}: resolve ${r.resolveMs.toFixed(0)} ms, cold read ${r.readMs.toFixed(0)} ms (daemon CPU ${r.cpuMs.toFixed(0)} ms), curl ${curl.toFixed(0)} ms, fetched/blob ${(r.fetched / p.big.bytes.length).toFixed(3)}`);
  }
  const curl = median(runs.map((r) => r.curl));
  const g = `64 MiB file, cold (${format === 'estargz' ? 'eStargz, 4 MiB chunks' : 'zstd:chunked, 64 KiB chunks'}, loopback, median of ${REPEAT})`;
  report({ group: g, name: 'cold read vs curl of the whole layer blob', value: median(runs.map((r) => r.readMs)), baseline: curl, unit: 'ms', row: `cold-read/${format}` });
  report({ group: g, name: 'daemon CPU time during the cold read vs curl of the whole layer blob (wall)', value: median(runs.map((r) => r.cpuMs)), baseline: curl, unit: 'ms' });
  report({ group: g, name: 'bytes fetched (TOC + file) / bytes needed (the layer blob)', value: median(runs.map((r) => r.fetched)), baseline: p.big.bytes.length, unit: 'B', row: `bytes/${format}` });
  report({ group: g, name: 'resolve (footer + TOC + index) before the read', value: median(runs.map((r) => r.resolveMs)), unit: 'ms' });
  if (format === 'estargz') await referenceColdRead(work, reg, p);
  else for (const row of [`cold-read/${format}`, `bytes/${format}`]) skip(row, 'stargz-store serves eStargz layers only', 'reference');
}

/** The same cold read through stargz-store (podman 4 keys: blob digest), when it can run here. */
async function referenceColdRead(work: string, reg: RegistryHandle, p: Pushed): Promise<void> {
  const missing = referenceStoreMissing();
  if (missing) {
    for (const row of ['cold-read/estargz', 'bytes/estargz']) skip(row, missing, 'reference');
    return;
  }
  const reads: number[] = [];
  const curls: number[] = [];
  const fetched: number[] = [];
  for (let i = 0; i < REPEAT; i++) {
    const rs = await startReferenceStore(join(work, `ref-${i}`), [reg.host]);
    try {
      const layerDir = join(rs.mountpoint, refElem(p.ref), sha256(p.big.bytes));
      const cursor = new LogCursor(reg.logPath);
      await readFile(join(layerDir, 'info'));
      await dropCaches();
      const [ms, n] = await timed(() => readAll(join(layerDir, 'diff', P.big)));
      if (n !== BIG_SIZE) throw new Error(`stargz-store read ${n} bytes`);
      reads.push(ms);
      // every agent: only stargz-store talks to the registry in this window
      fetched.push(blobBytes(cursor.since()).get(sha256(p.big.bytes)) ?? 0);
    } finally {
      await rs.stop();
    }
    await dropCaches();
    curls.push(await curlMs(p.url));
    log(`reference store run ${i}: cold read ${reads.at(-1)!.toFixed(0)} ms, curl ${curls.at(-1)!.toFixed(0)} ms`);
  }
  const g = `64 MiB file, cold (eStargz, 4 MiB chunks, loopback, median of ${REPEAT})`;
  report({ group: g, name: 'reference store (stargz-store): cold read vs curl of the whole layer blob', value: median(reads), baseline: median(curls), unit: 'ms', row: 'cold-read/estargz', subject: 'reference' });
  report({ group: g, name: 'reference store (stargz-store): bytes fetched (TOC + file) / bytes needed (the layer blob)', value: median(fetched), baseline: p.big.bytes.length, unit: 'B', row: 'bytes/estargz', subject: 'reference' });
}

async function main(): Promise<void> {
  const work = await makeTestDir('bench-cold');
  const reg = await startRegistry();
  try {
    for (const format of FORMATS) await measure(work, reg, format);
  } finally {
    await reg.stop();
    await spawnCollect(['rm', '-rf', '--one-file-system', '--', work]);
  }
}

runMain(main);
