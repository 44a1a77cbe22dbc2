/**
 * `podman pull` through the store, which only resolves layers (manifest, config, footer, TOC), vs
 * the baselines of issue 11, all measured in the same run, medians of BENCH_REPEAT (default 3):
 *   - podman 4: pull of the zstd:chunked image through the store vs a plain pull of the gzip image;
 *   - podman 5: pull through the store (TOC keys) vs podman 5's own partial pull of the same
 *     zstd:chunked image (no store).
 * Image: a Debian minbase rootfs layer + a layer of the e2e feature files, gzip and zstd:chunked
 * (by podman 5). Also prints the store's resolve time per layer (from its log).
 *
 *   npx vite-node bench/e2e/pull.ts          (root, /dev/fuse, the podman 5 chroot)
 *   BENCH_CPU_PROF=DIR …                     (the daemons run with node --cpu-prof into DIR; the
 *                                            pull's window is printed for bench/profile-summary.mjs)
 *   BENCH_PODMAN=4 …                         (only podman 4, or 5; default both)
 *   BENCH_TIMELINE=1 …                       (print each pull's timeline from the store's debug log:
 *                                            podman's lookups, round trips, index opens, persists;
 *                                            podman's own debug log has only 1 s timestamps)
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { createPodman, makeTestDir, spawnCollect, type PodmanHandle, type PodmanVersion } from '../../test/helpers/podman.js';
import { tarDir } from '../../test/helpers/fixtures-podman.js';
import { pushImage } from '../../test/helpers/registry-push.js';
import { startRegistry } from '../../test/helpers/registry.js';
import { debianRootfs } from '../../test/helpers/rootfs.js';
import { layerTar, MT_TAR_GZIP, pushZstdChunked, sha256 } from '../../test/e2e/images.js';
import { startStore } from '../../test/e2e/store.js';
import { log, report } from './report.js';

const REPEAT = Number(process.env['BENCH_REPEAT'] ?? 3);
const PROF = process.env['BENCH_CPU_PROF'];
const VERSIONS = (process.env['BENCH_PODMAN'] ?? '4,5').split(',').map(Number) as PodmanVersion[];
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

const TIMELINE = process.env['BENCH_TIMELINE'] === '1';

async function timedPull(pm: PodmanHandle, ref: string): Promise<number> {
  const t0 = performance.now();
  await pm.run(['pull', '-q', ref], { check: true, timeoutMs: 600_000 });
  return performance.now() - t0;
}

/**
 * The daemon's debug events during one pull, ms after it started: podman's lookups (als.lookup),
 * the image resolution, each resolve read (round trip), index open and persist, resolved layers.
 */
function printTimeline(logText: string, startMs: number): void {
  const wanted = /"(als\.lookup|catalog\.(image_resolved|image_persisted|resolve_read|index_opened|resolved))"/;
  for (const l of logText.split('\n')) {
    if (!wanted.test(l)) continue;
    const { time, level: _l, event, pid: _p, layer, ...rest } = JSON.parse(l) as Record<string, unknown>;
    const t = Date.parse(String(time)) - startMs;
    if (t < 0) continue;
    const short = typeof layer === 'string' ? layer.slice(7, 19) : '';
    log(`  store  +${String(t).padStart(5)} ms  ${String(event).padEnd(24)} ${short} ${JSON.stringify(rest)}`);
  }
}

/** Per-layer resolve times the daemon logged (catalog.resolved lines), ms. */
function resolveTimes(logText: string): number[] {
  return logText
    .split('\n')
    .filter((l) => l.includes('"catalog.resolved"'))
    .map((l) => Number((JSON.parse(l) as { ms?: number }).ms))
    .filter((n) => Number.isFinite(n));
}

async function main(): Promise<void> {
  const work = await makeTestDir('bench-pull');
  const reg = await startRegistry();
  try {
    const rootfs = await debianRootfs();
    const tarPath = join(work, 'rootfs.tar');
    await tarDir(rootfs, tarPath);
    const tars = [await readFile(tarPath), layerTar('features')];
    await pushImage(reg, 'bench/pull', 'gzip', {
      layers: tars.map((t) => ({ bytes: gzipSync(t), mediaType: MT_TAR_GZIP, diffId: sha256(t) })),
      config: { created: '2024-01-01T00:00:00Z', config: { Cmd: ['/bin/sh'] } },
    });
    const gzipRef = `${reg.host}/bench/pull:gzip`;
    const zc = await pushZstdChunked(reg, gzipRef, 'bench/pull', 'zstdchunked');
    const registries = [{ host: reg.host, insecure: true as const }];
    const res: Record<string, number[]> = { s4: [], p4: [], s5: [], p5: [], w4: [], w5: [] };
    const perLayer: number[] = [];
    for (let i = 0; i < REPEAT; i++) {
      for (const v of VERSIONS) {
        const dir = await makeTestDir(`bp${v}`);
        const wrap = PROF ? ['sh', '-c', `exec "$0" --cpu-prof --cpu-prof-dir=${PROF} "$@"`] : undefined;
        const store = await startStore({ dir, logLevel: 'debug', ...(wrap ? { wrap } : {}) });
        let pm: PodmanHandle | undefined;
        let plain: PodmanHandle | undefined;
        let warm: PodmanHandle | undefined;
        try {
          pm = await createPodman(v, { workDir: join(dir, 'p'), als: { dir: store.mountpoint }, registries });
          const us0 = process.hrtime.bigint() / 1000n; // the daemon's --cpu-prof clock
          const wall0 = Date.now();
          res[`s${v}`]!.push(await timedPull(pm, zc.ref));
          if (PROF) log(`podman ${v} pull profile window (µs, monotonic): ${us0} ${process.hrtime.bigint() / 1000n} (daemon pid ${store.pid})`);
          if (TIMELINE) printTimeline(store.log(), wall0);
          const times = resolveTimes(store.log());
          perLayer.push(...times);
          log(`podman ${v}: per-layer resolve ms ${times.join(' ')}`);
          // The floor: a fresh podman pulling the same image from the same store, every layer
          // already resolved — podman's own cost plus lookups the store answers from memory.
          warm = await createPodman(v, { workDir: join(dir, 'w'), als: { dir: store.mountpoint }, registries });
          res[`w${v}`]!.push(await timedPull(warm, zc.ref));
          plain = await createPodman(v, { workDir: join(dir, 'q'), registries });
          // podman 4: the plain gzip pull; podman 5: its own partial pull of the zstd:chunked image
          res[`p${v}`]!.push(await timedPull(plain, v === 4 ? gzipRef : zc.ref));
          log(`run ${i} podman ${v}: store ${res[`s${v}`]!.at(-1)!.toFixed(0)} ms, warm store ${res[`w${v}`]!.at(-1)!.toFixed(0)} ms, baseline ${res[`p${v}`]!.at(-1)!.toFixed(0)} ms`);
        } finally {
          await pm?.cleanup();
          await plain?.cleanup();
          await warm?.cleanup();
          await store.stop();
          await spawnCollect(['rm', '-rf', '--one-file-system', '--', dir]);
        }
      }
    }
    const g = `podman pull, Debian rootfs + features image (median of ${REPEAT})`;
    if (res['s4']!.length > 0) report({ group: g, name: 'podman 4: pull through the store vs plain pull of the gzip image (goal ≤ 0.05)', value: median(res['s4']!), baseline: median(res['p4']!), unit: 'ms' });
    if (res['s5']!.length > 0) report({ group: g, name: "podman 5: pull through the store vs podman 5's own partial pull of the zstd:chunked image (goal ≤ 0.05)", value: median(res['s5']!), baseline: median(res['p5']!), unit: 'ms' });
    for (const v of VERSIONS) {
      const w = res[`w${v}`]!;
      if (w.length > 0) report({ group: g, name: `podman ${v}: pull through a warm store (layers already resolved: podman's own floor) vs the same baseline`, value: median(w), baseline: median(res[`p${v}`]!), unit: 'ms' });
    }
    if (perLayer.length > 0) {
      report({ group: g, name: 'store: resolve time per layer (median; manifest+config+footer+TOC+index)', value: median(perLayer), unit: 'ms', note: `max ${Math.max(...perLayer).toFixed(0)} ms over ${perLayer.length}` });
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
