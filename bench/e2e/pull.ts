/**
 * `podman pull` through the store, which only resolves layers (manifest, config, footer, TOC), and
 * pull + first run, vs the baselines of issue 11, all measured in the same run, medians of
 * BENCH_REPEAT (default 3):
 *   - podman 4: pull (and pull + first run) of the zstd:chunked image through the store vs a plain
 *     pull (and run) of the gzip image;
 *   - podman 5: pull through the store (TOC keys) vs podman 5's own partial pull of the same
 *     zstd:chunked image (no store);
 *   - podman 4 through the reference store (stargz-store) on the same image as eStargz, when it can
 *     run here (podman 5's TOC keys it cannot serve).
 * Image: a Debian minbase rootfs layer + a layer of the e2e feature files, gzip, zstd:chunked (by
 * podman 5) and eStargz (the project's writer). Also prints the store's resolve time per layer.
 *
 *   npx vite-node bench/e2e/pull.ts          (root, /dev/fuse, the podman 5 chroot)
 *   BENCH_CPU_PROF=DIR …                     (the daemons run with node --cpu-prof into DIR; the
 *                                            pull's window is printed for bench/profile-summary.mjs)
 *   BENCH_PODMAN=4 …                         (only podman 4, or 5; default both)
 *   BENCH_TIMELINE=1 …                       (print each pull's timeline from the store's debug log:
 *                                            podman's lookups, round trips, index opens, persists;
 *                                            podman's own debug log has only 1 s timestamps)
 * Also measured: podman's own floor, a fresh podman pulling the same image from the same store
 * with every layer already resolved (warm store).
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { createPodman, makeTestDir, spawnCollect, type PodmanHandle, type PodmanVersion } from '../../test/helpers/podman.js';
import { tarDir } from '../../test/helpers/fixtures-podman.js';
import { pushImage } from '../../test/helpers/registry-push.js';
import { startRegistry, type RegistryHandle } from '../../test/helpers/registry.js';
import { debianRootfs } from '../../test/helpers/rootfs.js';
import { buildEStargz } from '../../test/helpers/writers/estargz.js';
import { buildLayer, ESTARGZ_TOC, ESTARGZ_USIZE, layerTar, MT_TAR_GZIP, pushZstdChunked, sha256 } from '../../test/e2e/images.js';
import { startStore } from '../../test/e2e/store.js';
import { tarEntries } from '../formats/tar-entries.js';
import { cpuProfWrap, log, median, REPEAT, report, runMain, skip } from './report.js';
import { referenceStoreMissing, startReferenceStore } from './reference-store.js';

const VERSIONS = (process.env['BENCH_PODMAN'] ?? '4,5').split(',').map(Number) as PodmanVersion[];
const TIMELINE = process.env['BENCH_TIMELINE'] === '1';
/** The first run: a shell and a dynamically linked program reading a file of the image. */
const RUN = ['run', '--rm', '--network=none'];
const CMD = ['sh', '-c', 'head -1 /etc/os-release'];

interface Images {
  gzip: string;
  zstdchunked: string;
  estargz: string;
}

interface Times {
  pull: number;
  run: number;
}

async function pushImages(reg: RegistryHandle, work: string): Promise<Images> {
  const rootfs = await debianRootfs();
  const tarPath = join(work, 'rootfs.tar');
  await tarDir(rootfs, tarPath);
  const tars = [await readFile(tarPath), layerTar('features')];
  const config = { created: '2024-01-01T00:00:00Z', config: { Cmd: ['/bin/sh'] } };
  await pushImage(reg, 'bench/pull', 'gzip', { layers: tars.map((t) => ({ bytes: gzipSync(t), mediaType: MT_TAR_GZIP, diffId: sha256(t) })), config });
  const gzip = `${reg.host}/bench/pull:gzip`;
  const zc = await pushZstdChunked(reg, gzip, 'bench/pull', 'zstdchunked');
  // eStargz for the reference store: the rootfs re-packed by the project's writer, and the features layer
  const es = buildEStargz(tarEntries(tars[0]!, tarPath).map(({ mtimeNsec: _, ...e }) => e));
  const feat = buildLayer('features', 'estargz');
  await pushImage(reg, 'bench/pull', 'estargz', {
    layers: [
      { bytes: es.blob, mediaType: MT_TAR_GZIP, diffId: es.diffId, annotations: { [ESTARGZ_TOC]: es.tocDigest, [ESTARGZ_USIZE]: String(es.uncompressedSize) } },
      { bytes: feat.bytes, mediaType: feat.mediaType, diffId: feat.diffId, annotations: feat.annotations! },
    ],
    config,
  });
  return { gzip, zstdchunked: zc.ref, estargz: `${reg.host}/bench/pull:estargz` };
}

async function timedPull(pm: PodmanHandle, ref: string): Promise<number> {
  const t0 = performance.now();
  await pm.run(['pull', '-q', ref], { check: true, timeoutMs: 600_000 });
  return performance.now() - t0;
}

/** Pull (timed; then `afterPull`, untimed), then the first run (timed; its output checked). */
async function pullAndRun(pm: PodmanHandle, ref: string, afterPull?: () => void): Promise<Times> {
  const pull = await timedPull(pm, ref);
  afterPull?.();
  const t1 = performance.now();
  const r = await pm.run([...RUN, ref, ...CMD], { check: true, timeoutMs: 600_000 });
  const t2 = performance.now();
  if (!r.stdout.includes('Debian')) throw new Error(`podman run printed ${JSON.stringify(r.stdout.slice(0, 200))}`);
  return { pull, run: t2 - t1 };
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

type Results = Record<string, Times[]>;
const add = (res: Results, k: string, t: Times): number => (res[k] ??= []).push(t);

/** One round for one podman version on fresh storages: store, plain baseline, reference store. */
async function round(v: PodmanVersion, img: Images, reg: RegistryHandle, res: Results, perLayer: number[]): Promise<void> {
  const dir = await makeTestDir(`bp${v}`);
  const wrap = cpuProfWrap();
  const store = await startStore({ dir, logLevel: 'debug', ...(wrap ? { wrap } : {}) });
  const registries = [{ host: reg.host, insecure: true as const }];
  const pms: PodmanHandle[] = [];
  try {
    const pm = await createPodman(v, { workDir: join(dir, 'p'), als: { dir: store.mountpoint }, registries });
    pms.push(pm);
    const us0 = process.hrtime.bigint() / 1000n; // the daemon's --cpu-prof clock
    const wall0 = Date.now();
    const afterPull = (): void => {
      if (wrap) log(`podman ${v} pull profile window (µs, monotonic): ${us0} ${process.hrtime.bigint() / 1000n} (daemon pid ${store.pid})`);
      if (TIMELINE) printTimeline(store.log(), wall0);
      const times = resolveTimes(store.log());
      perLayer.push(...times);
      log(`podman ${v}: per-layer resolve ms ${times.join(' ')}`);
    };
    add(res, `s${v}`, await pullAndRun(pm, img.zstdchunked, afterPull));
    // the floor: a fresh podman pulling the same image from the same store, every layer already
    // resolved — podman's own cost plus lookups the store answers from memory
    const warm = await createPodman(v, { workDir: join(dir, 'w'), als: { dir: store.mountpoint }, registries });
    pms.push(warm);
    add(res, `w${v}`, { pull: await timedPull(warm, img.zstdchunked), run: 0 });
    const plain = await createPodman(v, { workDir: join(dir, 'q'), registries });
    pms.push(plain);
    // podman 4: the plain gzip pull; podman 5: its own partial pull of the zstd:chunked image
    add(res, `p${v}`, await pullAndRun(plain, v === 4 ? img.gzip : img.zstdchunked));
    if (v === 4 && !referenceStoreMissing()) add(res, 'r4', await referencePullAndRun(join(dir, 'r'), img, registries));
  } finally {
    for (const pm of pms) await pm.cleanup();
    await store.stop();
    await spawnCollect(['rm', '-rf', '--one-file-system', '--', dir]);
  }
}

async function referencePullAndRun(dir: string, img: Images, registries: { host: string; insecure: true }[]): Promise<Times> {
  const rs = await startReferenceStore(dir, registries.map((r) => r.host));
  let pm: PodmanHandle | undefined;
  try {
    pm = await createPodman(4, { workDir: join(dir, 'p'), als: { dir: rs.mountpoint }, registries });
    return await pullAndRun(pm, img.estargz);
  } finally {
    await pm?.cleanup();
    await rs.stop();
  }
}

function reportAll(res: Results, perLayer: number[]): void {
  const g = `podman pull, Debian rootfs + features image (median of ${REPEAT})`;
  const m = (k: string, f: (t: Times) => number): number => median(res[k]!.map(f));
  const pull = (t: Times): number => t.pull;
  const both = (t: Times): number => t.pull + t.run;
  if (res['s4']) {
    report({ group: g, name: 'podman 4: pull through the store (zstd:chunked) vs plain pull of the gzip image', value: m('s4', pull), baseline: m('p4', pull), unit: 'ms', row: 'pull/podman4' });
    report({ group: g, name: 'podman 4: pull + first run through the store vs plain pull + run of the gzip image', value: m('s4', both), baseline: m('p4', both), unit: 'ms', row: 'pull-run/podman4' });
    if (res['r4']) {
      report({ group: g, name: 'reference store (stargz-store, eStargz), podman 4: pull vs plain pull of the gzip image', value: m('r4', pull), baseline: m('p4', pull), unit: 'ms', row: 'pull/podman4', subject: 'reference' });
      report({ group: g, name: 'reference store (stargz-store, eStargz), podman 4: pull + first run vs plain pull + run', value: m('r4', both), baseline: m('p4', both), unit: 'ms', row: 'pull-run/podman4', subject: 'reference' });
    } else {
      for (const row of ['pull/podman4', 'pull-run/podman4']) skip(row, referenceStoreMissing() ?? 'not run', 'reference');
    }
  }
  if (res['s5']) {
    report({ group: g, name: "podman 5: pull through the store vs podman 5's own partial pull of the zstd:chunked image", value: m('s5', pull), baseline: m('p5', pull), unit: 'ms', row: 'pull/podman5' });
    report({ group: g, name: "podman 5: pull + first run through the store vs podman 5's own partial pull + run", value: m('s5', both), baseline: m('p5', both), unit: 'ms' });
    skip('pull/podman5', 'stargz-store cannot serve TOC-keyed (podman ≥ 5.1) lookups nor zstd:chunked', 'reference');
  }
  for (const v of VERSIONS) {
    if (res[`w${v}`]) report({ group: g, name: `podman ${v}: pull through a warm store (layers already resolved: podman's own floor) vs the same baseline`, value: m(`w${v}`, pull), baseline: m(`p${v}`, pull), unit: 'ms' });
  }
  if (perLayer.length > 0) {
    report({ group: g, name: 'store: resolve time per layer (median; manifest+config+footer+TOC+index)', value: median(perLayer), unit: 'ms', note: `max ${Math.max(...perLayer).toFixed(0)} ms over ${perLayer.length}` });
  }
}

async function main(): Promise<void> {
  const work = await makeTestDir('bench-pull');
  const reg = await startRegistry();
  try {
    const img = await pushImages(reg, work);
    const res: Results = {};
    const perLayer: number[] = [];
    for (let i = 0; i < REPEAT; i++) {
      for (const v of VERSIONS) {
        await round(v, img, reg, res, perLayer);
        const last = (k: string): string => (res[k]?.length ? `${res[k]!.at(-1)!.pull.toFixed(0)}+${res[k]!.at(-1)!.run.toFixed(0)} ms` : '-');
        log(`run ${i} podman ${v}: pull+run store ${last(`s${v}`)}, warm store pull ${last(`w${v}`)}, baseline ${last(`p${v}`)}${v === 4 ? `, reference store ${last('r4')}` : ''}`);
      }
    }
    reportAll(res, perLayer);
  } finally {
    await reg.stop();
    await spawnCollect(['rm', '-rf', '--one-file-system', '--', work]);
  }
}

runMain(main);
