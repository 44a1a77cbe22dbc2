/**
 * `podman run` after the pull (issue 10's table), through the store vs the baseline, both measured
 * in the same run, medians of BENCH_REPEAT (default 3):
 *   - podman 4: first and second run of the zstd:chunked image pulled through the store ÷ the same
 *     on the gzip image plainly pulled (podman unpacks it to its own overlay);
 *   - podman 5: first and second run through the store (TOC keys) ÷ the same after podman 5's own
 *     partial pull of the same zstd:chunked image (no store);
 *   - the store daemon's peak RSS (VmHWM) through pull and runs.
 * The command starts a dynamically linked program (apt-config: libapt-pkg, libstdc++) and lists
 * /usr/lib with attributes, so both file contents (first run: fetched; second: cached) and metadata
 * are measured. Image: Debian minbase rootfs layer + the e2e feature layer.
 *
 *   npx vite-node bench/e2e/runs.ts             (root, /dev/fuse, the podman 5 chroot)
 *   BENCH_STORE_BACKEND=fuse-native …           the store's FUSE backend (default native)
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
import { log, median, REPEAT, report, runMain } from './report.js';

const BACKEND = process.env['BENCH_STORE_BACKEND'] ?? 'native';
const CMD = 'apt-config dump >/dev/null && ls -lR /usr/lib >/dev/null && echo ok';

async function timedRun(pm: PodmanHandle, ref: string): Promise<number> {
  const t0 = performance.now();
  const r = await pm.run(['run', '--rm', '--network=none', ref, 'sh', '-c', CMD], { check: true, timeoutMs: 600_000 });
  const ms = performance.now() - t0;
  if (r.stdout.trim() !== 'ok') throw new Error(`podman run printed ${JSON.stringify(r.stdout.slice(0, 200))}`);
  return ms;
}

async function main(): Promise<void> {
  const work = await makeTestDir('bench-runs');
  const reg = await startRegistry();
  try {
    const rootfs = await debianRootfs();
    const tarPath = join(work, 'rootfs.tar');
    await tarDir(rootfs, tarPath);
    const tars = [await readFile(tarPath), layerTar('features')];
    await pushImage(reg, 'bench/runs', 'gzip', {
      layers: tars.map((t) => ({ bytes: gzipSync(t), mediaType: MT_TAR_GZIP, diffId: sha256(t) })),
      config: { created: '2024-01-01T00:00:00Z', config: { Cmd: ['/bin/sh'], Env: ['PATH=/usr/sbin:/usr/bin:/sbin:/bin'] } },
    });
    const gzipRef = `${reg.host}/bench/runs:gzip`;
    const zc = await pushZstdChunked(reg, gzipRef, 'bench/runs', 'zstdchunked');
    const registries = [{ host: reg.host, insecure: true as const }];
    const res: Record<string, number[]> = {};
    const add = (k: string, v: number) => (res[k] ??= []).push(v);
    for (let i = 0; i < REPEAT; i++) {
      for (const v of [4, 5] as PodmanVersion[]) {
        const dir = await makeTestDir(`br${v}`);
        const store = await startStore({ dir, extraArgs: ['--backend', BACKEND] });
        let pm: PodmanHandle | undefined;
        let plain: PodmanHandle | undefined;
        try {
          pm = await createPodman(v, { workDir: join(dir, 'p'), als: { dir: store.mountpoint }, registries });
          await pm.run(['pull', '-q', zc.ref], { check: true, timeoutMs: 600_000 });
          add(`s${v}first`, await timedRun(pm, zc.ref));
          add(`s${v}second`, await timedRun(pm, zc.ref));
          add(`s${v}rss`, store.peakRss());
          plain = await createPodman(v, { workDir: join(dir, 'q'), registries });
          // podman 4: the plain gzip pull; podman 5: its own partial pull of the zstd:chunked image
          const base = v === 4 ? gzipRef : zc.ref;
          await plain.run(['pull', '-q', base], { check: true, timeoutMs: 600_000 });
          add(`p${v}first`, await timedRun(plain, base));
          add(`p${v}second`, await timedRun(plain, base));
          log(`run ${i} podman ${v}: store ${res[`s${v}first`]!.at(-1)!.toFixed(0)} / ${res[`s${v}second`]!.at(-1)!.toFixed(0)} ms, baseline ${res[`p${v}first`]!.at(-1)!.toFixed(0)} / ${res[`p${v}second`]!.at(-1)!.toFixed(0)} ms`);
        } finally {
          await pm?.cleanup();
          await plain?.cleanup();
          await store.stop();
          await spawnCollect(['rm', '-rf', '--one-file-system', '--', dir]);
        }
      }
    }
    const g = `podman run after the pull, Debian rootfs + features image, store backend ${BACKEND} (median of ${REPEAT})`;
    const m = (k: string) => median(res[k]!);
    report({ group: g, name: 'podman 4: first run through the store ÷ first run of the plainly pulled gzip image (goal ≤ 1.2)', value: m('s4first'), baseline: m('p4first'), unit: 'ms' });
    report({ group: g, name: 'podman 4: second run ÷ second run of the plainly pulled image (goal ≤ 1.02)', value: m('s4second'), baseline: m('p4second'), unit: 'ms' });
    report({ group: g, name: "podman 5, zstd:chunked: first run through the store ÷ after podman 5's own partial pull (goal ≤ 1.2)", value: m('s5first'), baseline: m('p5first'), unit: 'ms' });
    report({ group: g, name: "podman 5, zstd:chunked: second run ÷ after podman 5's own partial pull (goal ≤ 1.02)", value: m('s5second'), baseline: m('p5second'), unit: 'ms' });
    report({ group: g, name: 'store daemon peak RSS (VmHWM) through pull and two runs, podman 4 (goal ≤ 80 MiB)', value: m('s4rss'), unit: 'B' });
    report({ group: g, name: 'store daemon peak RSS (VmHWM) through pull and two runs, podman 5 (goal ≤ 80 MiB)', value: m('s5rss'), unit: 'B' });
  } finally {
    await reg.stop();
    await spawnCollect(['rm', '-rf', '--one-file-system', '--', work]);
  }
}

runMain(main);
