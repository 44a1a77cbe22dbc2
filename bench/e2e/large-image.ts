/**
 * Time from `podman pull` to a container's first output for a large image, through lazy-als vs a
 * plain pull, on loopback and over an emulated 20 ms RTT / 100 Mbit/s link; then a second run
 * (warm) of each.
 *
 *   npx vite-node bench/e2e/large-image.ts        (root, /dev/fuse, the podman 5 chroot)
 *   BENCH_LARGE_LINKS=slow …                      (only the emulated link; default loopback,slow)
 *
 * Image (≥ 500 MiB uncompressed): layer 0 = a Debian bookworm minbase rootfs
 * (test/helpers/rootfs.ts debianRootfs(), ~175 MiB), layer 1 = 4 × 96 MiB pseudo-random data files.
 * Pushed as gzip (the baseline: what `podman pull` downloads and unpacks) and as zstd:chunked by
 * podman 5 itself (what the store serves lazily). The command prints the time (date +%s%N: the first
 * output), then reads /etc/debian_version and 16 MiB of one data file: < 5 % of the image.
 * Both sides use podman 5 with fresh storages; the store side has a fresh state dir (cold cache).
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { createPodman, makeTestDir, spawnCollect, type PodmanHandle } from '../../test/helpers/podman.js';
import { tarDir } from '../../test/helpers/fixtures-podman.js';
import { pushImage } from '../../test/helpers/registry-push.js';
import { startRegistry, type RegistryHandle } from '../../test/helpers/registry.js';
import { debianRootfs } from '../../test/helpers/rootfs.js';
import { buildTar } from '../../test/helpers/writers/tar.js';
import { MT_TAR_GZIP, pseudoRandom, pushZstdChunked, sha256 } from '../../test/e2e/images.js';
import { blobBytes, LAZY_ALS_AGENT, LogCursor } from '../../test/e2e/registry-log.js';
import { startStore, type Store } from '../../test/e2e/store.js';
import { createSlowLink, netnsAvailable, startRegistryIn, type SlowLink } from './slow-link.js';
import { log, report, runMain, skip } from './report.js';

const MIB = 1024 * 1024;
const DATA_FILES = Number(process.env['BENCH_DATA_FILES'] ?? 4);
const DATA_MIB = Number(process.env['BENCH_DATA_MIB'] ?? 96);
const REPO = 'bench/large';
const CMD = 'date +%s%N; cat /etc/debian_version; head -c 16777216 /data/d0.bin | md5sum';
/** Which links to measure: loopback and/or the emulated 100 Mbit/s, 20 ms RTT one (BENCH_LARGE_LINKS, default both). */
const LINKS = (process.env['BENCH_LARGE_LINKS'] ?? 'loopback,slow').split(',');

interface Pushed {
  gzipRef: string;
  chunkedRef: string;
  uncompressedBytes: number;
  gzipBytes: number;
  chunkedBytes: number;
}

async function buildAndPush(reg: RegistryHandle, work: string): Promise<Pushed> {
  const rootfs = await debianRootfs();
  const rootTarPath = join(work, 'rootfs.tar');
  await tarDir(rootfs, rootTarPath);
  const rootTar = await readFile(rootTarPath);
  const dataTar = buildTar([
    { name: 'data/', type: 'dir', mode: 0o755, mtime: 1704067200 },
    ...Array.from({ length: DATA_FILES }, (_, i) => ({ name: `data/d${i}.bin`, type: 'reg' as const, mode: 0o644, mtime: 1704067200, data: pseudoRandom(DATA_MIB * MIB, `bench data ${i}`) })),
  ]);
  log(`layers: rootfs ${(rootTar.length / MIB).toFixed(0)} MiB, data ${(dataTar.length / MIB).toFixed(0)} MiB; gzip…`);
  const layers = [rootTar, dataTar].map((t, i) => ({ bytes: gzipSync(t, { level: i === 0 ? 6 : 1 }), mediaType: MT_TAR_GZIP, diffId: sha256(t) }));
  const pushed = await pushImage(reg, REPO, 'gzip', { layers, config: { created: '2024-01-01T00:00:00Z', config: { Cmd: ['/bin/sh'] } } });
  const gzipRef = `${reg.host}/${REPO}:gzip`;
  log('zstd:chunked by podman 5…');
  const chunked = await pushZstdChunked(reg, gzipRef, REPO, 'zstdchunked');
  return {
    gzipRef,
    chunkedRef: chunked.ref,
    uncompressedBytes: rootTar.length + dataTar.length,
    gzipBytes: pushed.layers.reduce((n, l) => n + l.size, 0),
    chunkedBytes: chunked.layers.reduce((n, l) => n + l.size, 0),
  };
}

interface RunTimes {
  pullMs: number;
  firstOutputMs: number;
  totalMs: number;
  warmFirstOutputMs: number;
}

/** pull + run, timed from the start of the pull to the container's first output line (its clock). */
async function pullAndRun(pm: PodmanHandle, ref: string, pre: string[]): Promise<RunTimes> {
  const t0 = Date.now();
  await pm.exec([...pre, 'podman', 'pull', '-q', ref], { check: true, timeoutMs: 900_000 });
  const pullMs = Date.now() - t0;
  const r = await pm.exec([...pre, 'podman', 'run', '--rm', ref, 'sh', '-c', CMD], { check: true, timeoutMs: 900_000 });
  const totalMs = Date.now() - t0;
  const first = Number(BigInt(r.stdout.split('\n')[0]!.trim()) / 1_000_000n) - t0;
  // a second run of the same image: warm (the store's cache, podman's unpacked layers)
  const t1 = Date.now();
  const r2 = await pm.exec([...pre, 'podman', 'run', '--rm', ref, 'sh', '-c', CMD], { check: true, timeoutMs: 900_000 });
  const warm = Number(BigInt(r2.stdout.split('\n')[0]!.trim()) / 1_000_000n) - t1;
  if (!r.stdout.includes('12.') || !r2.stdout.includes('12.')) throw new Error(`unexpected output: ${r.stdout}`);
  return { pullMs, firstOutputMs: first, totalMs, warmFirstOutputMs: warm };
}

interface Scenario {
  name: string;
  registryHost: string;
  registryLog: string;
  /** argv prefix for podman and the store (network namespace), [] on loopback */
  pre: string[];
  binds: string[];
}

async function runScenario(s: Scenario, img: Pushed, work: string): Promise<{ store: RunTimes; plain: RunTimes; fetched: number; rss: number }> {
  const host = s.registryHost;
  const rel = (ref: string): string => ref.replace(/^[^/]+/, host);
  // the store side
  const sdir = await makeTestDir('bls');
  let store: Store | undefined;
  let pmStore: PodmanHandle | undefined;
  let pmPlain: PodmanHandle | undefined;
  try {
    store = await startStore({ dir: sdir, insecureRegistries: [host], wrap: s.pre, logLevel: 'warn' });
    pmStore = await createPodman(5, { workDir: join(sdir, 'p5'), als: { dir: store.mountpoint }, registries: [{ host, insecure: true }], binds: s.binds });
    const cursor = new LogCursor(s.registryLog);
    log(`${s.name}: store pull+run…`);
    const st = await pullAndRun(pmStore, rel(img.chunkedRef), s.pre);
    const fetched = [...blobBytes(cursor.since(), { agent: LAZY_ALS_AGENT }).values()].reduce((a, b) => a + b, 0);
    const rss = store.peakRss();
    await pmStore.cleanup();
    pmStore = undefined;
    // the baseline: plain podman 5, gzip image, no ALS
    pmPlain = await createPodman(5, { workDir: join(sdir, 'plain'), registries: [{ host, insecure: true }], binds: s.binds });
    log(`${s.name}: plain pull+run…`);
    const pl = await pullAndRun(pmPlain, rel(img.gzipRef), s.pre);
    return { store: st, plain: pl, fetched, rss };
  } finally {
    await pmStore?.cleanup();
    await pmPlain?.cleanup();
    await store?.stop();
    await spawnCollect(['rm', '-rf', '--one-file-system', '--', sdir]);
  }
}

async function main(): Promise<void> {
  const work = await makeTestDir('bench-large');
  const reg = await startRegistry();
  let link: SlowLink | undefined;
  let far: Awaited<ReturnType<typeof startRegistryIn>> | undefined;
  try {
    const img = await buildAndPush(reg, work);
    log(`image: ${(img.uncompressedBytes / MIB).toFixed(0)} MiB uncompressed, gzip ${(img.gzipBytes / MIB).toFixed(0)} MiB, zstd:chunked ${(img.chunkedBytes / MIB).toFixed(0)} MiB`);
    const scenarios: Scenario[] = LINKS.includes('loopback') ? [{ name: 'loopback', registryHost: reg.host, registryLog: reg.logPath, pre: [], binds: [] }] : [];
    const missing = netnsAvailable();
    if (!LINKS.includes('slow')) {
      log('slow-link scenario not asked for (BENCH_LARGE_LINKS)');
    } else if (missing.length === 0 && process.env['BENCH_NO_NETNS'] !== '1') {
      link = await createSlowLink();
      far = await startRegistryIn(link, join(reg.dir, 'data'), work);
      scenarios.push({ name: '20ms RTT 100Mbit/s', registryHost: far.host, registryLog: far.logPath, pre: link.nsenter('near'), binds: ['/run/netns'] });
    } else {
      const why = `slow-link scenario skipped: ${missing.length ? `missing ${missing.join(', ')}` : 'BENCH_NO_NETNS=1'}`;
      log(why);
      for (const row of ['large/first-output', 'large/physical-limit']) skip(row, why);
    }
    for (const s of scenarios) {
      const r = await runScenario(s, img, work);
      const g = `pull+run large image (${(img.uncompressedBytes / MIB).toFixed(0)} MiB), ${s.name}`;
      const slow = s.pre.length > 0;
      report({ group: g, name: 'pull → first output: store vs plain pull', value: r.store.firstOutputMs, baseline: r.plain.firstOutputMs, unit: 'ms', ...(slow ? { row: 'large/first-output' } : {}) });
      report({ group: g, name: 'pull only: store vs plain pull', value: r.store.pullMs, baseline: r.plain.pullMs, unit: 'ms' });
      report({ group: g, name: 'pull + run to exit: store vs plain pull', value: r.store.totalMs, baseline: r.plain.totalMs, unit: 'ms' });
      report({ group: g, name: 'second run (warm) → first output: store vs plain', value: r.store.warmFirstOutputMs, baseline: r.plain.warmFirstOutputMs, unit: 'ms' });
      report({ group: g, name: 'bytes fetched by the store / image size (zstd:chunked)', value: r.fetched, baseline: img.chunkedBytes, unit: 'B' });
      if (slow) {
        // The physical limit of the store's side: the bytes it needed at the link's rate, plus the
        // round trips no pipelining can hide (manifest, config, then per layer footer and TOC, then
        // the first chunk read). Bytes needed are taken as the bytes fetched (bytes fetched ÷ needed
        // is its own row, ≈ 1.01 in bench/e2e/cold-read.ts), so over-fetching here is not charged.
        const rttMs = 20;
        const bytesPerMs = (100e6 / 8) / 1000;
        const roundTrips = 2 + 2 * 2 + 1;
        const limitMs = r.fetched / bytesPerMs + roundTrips * rttMs;
        report({ group: g, name: 'pull → first output: store vs the physical limit (bytes fetched ÷ 100 Mbit/s + 7 RTT)', value: r.store.firstOutputMs, baseline: limitMs, unit: 'ms', note: `limit ${limitMs.toFixed(0)} ms = ${(r.fetched / MIB).toFixed(1)} MiB ÷ 100 Mbit/s + ${roundTrips} × ${rttMs} ms`, row: 'large/physical-limit' });
      }
      report({ group: g, name: 'store daemon peak RSS (VmHWM)', value: r.rss / MIB, unit: 'MiB' });
    }
  } finally {
    await far?.stop();
    await link?.teardown();
    await reg.stop();
    await spawnCollect(['rm', '-rf', '--one-file-system', '--', work]);
  }
}

runMain(main);
