/**
 * Plain layers (no TOC, issue 11's "Era A"): a Debian minbase rootfs as a tar+gzip and a tar+zstd
 * layer, looked up by blob digest as podman ≤ 5.0 does. First lookup → ready (the store fetches
 * the blob whole, verifies blob digest and diff_id and indexes the tar in one streaming pass)
 * against `curl` of the same blob in the same run (kernel caches dropped before both); medians of
 * BENCH_REPEAT (default 3), each on a fresh store. Goal: curl's rate (ratio ≤ 1.0).
 *
 *   npx vite-node bench/e2e/plain-layer.ts      (root, /dev/fuse)
 *   BENCH_PLAIN=gzip …                          (default gzip,zstd)
 *   BENCH_CPU_PROF=DIR …                        (the daemons run with node --cpu-prof into DIR)
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { compress as zstdCompress } from 'zstd-napi';
import { makeTestDir, spawnCollect } from '../../test/helpers/podman.js';
import { tarDir } from '../../test/helpers/fixtures-podman.js';
import { pushImage } from '../../test/helpers/registry-push.js';
import { startRegistry, type RegistryHandle } from '../../test/helpers/registry.js';
import { debianRootfs } from '../../test/helpers/rootfs.js';
import { MT_TAR_GZIP, MT_TAR_ZSTD, refElem, sha256 } from '../../test/e2e/images.js';
import { startStore } from '../../test/e2e/store.js';
import { cpuProfWrap, curlMs, dropCaches, log, median, REPEAT, report, runMain, timed } from './report.js';

const KINDS = (process.env['BENCH_PLAIN'] ?? 'gzip,zstd').split(',') as ('gzip' | 'zstd')[];
const MIB = 1024 * 1024;

async function lookupMs(work: string, ref: string, digest: string, tag: string): Promise<number> {
  const wrap = cpuProfWrap();
  const s = await startStore({ dir: join(work, tag), logLevel: 'warn', ...(wrap ? { wrap } : {}) });
  try {
    await dropCaches();
    const [ms, info] = await timed(() => readFile(join(s.mountpoint, refElem(ref), digest, 'info'), 'utf8'));
    if (!info.includes(digest)) throw new Error(`info of ${digest}: ${info.slice(0, 200)}`);
    return ms;
  } finally {
    await s.stop();
  }
}

async function measure(work: string, reg: RegistryHandle, kind: 'gzip' | 'zstd', tar: Buffer): Promise<void> {
  const bytes = kind === 'gzip' ? gzipSync(tar) : Buffer.from(zstdCompress(tar));
  await pushImage(reg, 'bench/plain', kind, { layers: [{ bytes, mediaType: kind === 'gzip' ? MT_TAR_GZIP : MT_TAR_ZSTD, diffId: sha256(tar) }] });
  const ref = `${reg.host}/bench/plain:${kind}`;
  const digest = sha256(bytes);
  const store: number[] = [];
  const curl: number[] = [];
  for (let i = 0; i < REPEAT; i++) {
    store.push(await lookupMs(work, ref, digest, `${kind}-${i}`));
    await dropCaches();
    curl.push(await curlMs(`${reg.url}/v2/bench/plain/blobs/${digest}`));
    log(`${kind} run ${i}: lookup → ready ${store.at(-1)!.toFixed(0)} ms, curl ${curl.at(-1)!.toFixed(0)} ms`);
  }
  const g = `plain ${kind} layer, Debian minbase rootfs (${(tar.length / MIB).toFixed(0)} MiB tar, ${(bytes.length / MIB).toFixed(0)} MiB blob; loopback, median of ${REPEAT})`;
  report({ group: g, name: 'first lookup → ready (fetched whole, verified, indexed) vs curl of the blob', value: median(store), baseline: median(curl), unit: 'ms', row: `plain/${kind}` });
}

async function main(): Promise<void> {
  const work = await makeTestDir('bench-plain');
  const reg = await startRegistry();
  try {
    const tarPath = join(work, 'rootfs.tar');
    await tarDir(await debianRootfs(), tarPath);
    const tar = await readFile(tarPath);
    for (const kind of KINDS) await measure(work, reg, kind, tar);
  } finally {
    await reg.stop();
    await spawnCollect(['rm', '-rf', '--one-file-system', '--', work]);
  }
}

runMain(main);
