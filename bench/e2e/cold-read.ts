/**
 * The cold path alone (issue 11): a 64 MiB file read through the store right after its layer is
 * resolved (chunk cache empty, kernel caches dropped), against `curl` of the whole layer blob in the
 * same run; medians of BENCH_REPEAT (default 3) runs, each on a fresh store.
 *
 *   npx vite-node bench/e2e/cold-read.ts            (root, /dev/fuse)
 *   BENCH_FORMATS=estargz …                         (default: estargz and zstdchunked)
 *   BENCH_CPU_PROF=DIR …                            (the daemons run with node --cpu-prof into DIR)
 */
import { createReadStream } from 'node:fs';
import { readFileSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { makeTestDir, spawnCollect } from '../../test/helpers/podman.js';
import { pushImage } from '../../test/helpers/registry-push.js';
import { startRegistry } from '../../test/helpers/registry.js';
import { BIG_SIZE, bigEntries, buildLayer, MT_TAR_ZSTD, P, refElem, sha256 } from '../../test/e2e/images.js';
import { buildZstdChunked } from '../../test/helpers/writers/zstd-chunked.js';
import { blobBytes, LAZY_ALS_AGENT, LogCursor } from '../../test/e2e/registry-log.js';
import { startStore } from '../../test/e2e/store.js';
import { log, report, timed } from './report.js';

const REPEAT = Number(process.env['BENCH_REPEAT'] ?? 3);
const PROF = process.env['BENCH_CPU_PROF'];
const FORMATS = (process.env['BENCH_FORMATS'] ?? 'estargz,zstdchunked').split(',');

interface BigLayer {
  bytes: Buffer;
  mediaType: string;
  diffId: string;
  annotations: Record<string, string>;
  tocDigest: string;
}

/** The 64 MiB file's layer: eStargz (4 MiB chunks, the writer's default) or zstd:chunked (64 KiB chunks, like podman's). */
function bigLayer(format: string): BigLayer {
  if (format === 'estargz') {
    const l = buildLayer('big', 'estargz');
    return { bytes: l.bytes, mediaType: l.mediaType, diffId: l.diffId, annotations: l.annotations!, tocDigest: l.tocDigest! };
  }
  const z = buildZstdChunked(bigEntries(), { chunkSize: 64 * 1024 });
  return { bytes: z.blob, mediaType: MT_TAR_ZSTD, diffId: z.diffId, annotations: z.annotations, tocDigest: z.tocDigest };
}

async function readAll(path: string): Promise<number> {
  let n = 0;
  for await (const c of createReadStream(path, { highWaterMark: 1024 * 1024 })) n += (c as Buffer).length;
  return n;
}

async function dropCaches(): Promise<void> {
  await spawnCollect(['sync']);
  await writeFile('/proc/sys/vm/drop_caches', '3\n').catch(() => undefined);
}

/** utime + stime of a process and all its threads, ms (less sensitive to a loaded machine than wall time). */
function cpuMs(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const x = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return ((Number(x[11]) + Number(x[12])) * 1000) / 100; // fields 14 and 15, in USER_HZ (100)
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main(): Promise<void> {
  const work = await makeTestDir('bench-cold');
  const reg = await startRegistry();
  try {
    for (const format of FORMATS) {
      const base = buildLayer('base', 'estargz');
      const big = bigLayer(format);
      await pushImage(reg, 'bench/cold', format, { layers: [base, big].map((l) => ({ bytes: l.bytes, mediaType: l.mediaType, diffId: l.diffId, annotations: l.annotations! })) });
      const ref = `${reg.host}/bench/cold:${format}`;
      const bigDigest = sha256(big.bytes);
      const url = `${reg.url}/v2/bench/cold/blobs/${bigDigest}`;
      const cold: number[] = [];
      const curl: number[] = [];
      const cpu: number[] = [];
      let ratioFetched = 0;
      for (let i = 0; i < REPEAT; i++) {
        // node refuses --cpu-prof in NODE_OPTIONS: a tiny exec wrapper puts it on the command line
        const wrap = PROF ? ['sh', '-c', `exec "$0" --cpu-prof --cpu-prof-dir=${PROF} "$@"`] : undefined;
        const s = await startStore({ dir: join(work, `${format}-${i}`), logLevel: 'warn', ...(wrap ? { wrap } : {}) });
        try {
          const cursor = new LogCursor(reg.logPath);
          const t0 = performance.now();
          await readFile(join(s.mountpoint, refElem(ref), big.tocDigest!, 'info'));
          const resolveMs = performance.now() - t0;
          await dropCaches();
          const us0 = process.hrtime.bigint() / 1000n; // same monotonic clock as the daemon's --cpu-prof
          const cpu0 = cpuMs(s.pid);
          const [ms, n] = await timed(() => readAll(join(s.mountpoint, refElem(ref), big.tocDigest!, 'diff', P.big)));
          cpu.push(cpuMs(s.pid) - cpu0);
          if (PROF) log(`profile window (µs, monotonic): ${us0} ${process.hrtime.bigint() / 1000n}`);
          if (n !== BIG_SIZE) throw new Error(`read ${n} bytes`);
          cold.push(ms);
          ratioFetched = (blobBytes(cursor.since(), { agent: LAZY_ALS_AGENT }).get(bigDigest) ?? 0) / big.bytes.length;
          await dropCaches(); // curl too starts with the registry's files out of the page cache
          const [c] = await timed(async () => {
            const r = await spawnCollect(['curl', '-sf', '-o', '/dev/null', url]);
            if (r.code !== 0) throw new Error(`curl: ${r.stderr}`);
          });
          curl.push(c);
          log(`${format} run ${i}: resolve ${resolveMs.toFixed(0)} ms, cold read ${ms.toFixed(0)} ms (daemon CPU ${cpu[cpu.length - 1]!.toFixed(0)} ms), curl ${c.toFixed(0)} ms, fetched/blob ${ratioFetched.toFixed(3)}`);
        } finally {
          await s.stop();
        }
      }
      const g = `64 MiB file, cold (${format === 'estargz' ? 'eStargz, 4 MiB chunks' : 'zstd:chunked, 64 KiB chunks'}, loopback, median of ${REPEAT})`;
      report({ group: g, name: 'cold read vs curl of the whole layer blob (goal ≤ 1.2)', value: median(cold), baseline: median(curl), unit: 'ms' });
      report({ group: g, name: 'daemon CPU time during the cold read vs curl of the whole layer blob (wall)', value: median(cpu), baseline: median(curl), unit: 'ms' });
      report({ group: g, name: 'bytes fetched / layer blob size (goal ≤ 1.01)', value: ratioFetched * big.bytes.length, baseline: big.bytes.length, unit: 'B' });
    }
  } finally {
    await reg.stop();
    await spawnCollect(['rm', '-rf', '--one-file-system', '--', work]);
  }
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    console.error(e);
    process.exit(1);
  },
);
