/**
 * Reads through the store's own tree (no podman in the timed part), each against a baseline from
 * the same run:
 *   - cold read of a 64 MiB file (eStargz layer, fresh store) vs `curl` downloading the whole layer
 *     blob; bytes the store fetched / layer size (registry access log);
 *   - warm re-read of it vs the same bytes in a file on local disk (page cache warm on both);
 *   - `find -printf` (lstat of every entry) over the largest layer — a Debian minbase rootfs as
 *     zstd:chunked made by podman 5 — cold (fresh store, dropped caches) and warm, vs the extracted
 *     rootfs on local disk;
 *   - the daemon's peak RSS (VmHWM) afterwards.
 *
 *   npx vite-node bench/e2e/reads.ts       (root, /dev/fuse, the podman 5 chroot)
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { makeTestDir, spawnCollect } from '../../test/helpers/podman.js';
import { tarDir } from '../../test/helpers/fixtures-podman.js';
import { pushImage } from '../../test/helpers/registry-push.js';
import { startRegistry } from '../../test/helpers/registry.js';
import { debianRootfs } from '../../test/helpers/rootfs.js';
import { BIG_SIZE, bigFile, buildLayer, MT_TAR_GZIP, P, pushZstdChunked, refElem, sha256 } from '../../test/e2e/images.js';
import { blobBytes, LAZY_ALS_AGENT, LogCursor } from '../../test/e2e/registry-log.js';
import { startStore, type Store } from '../../test/e2e/store.js';
import { dropCaches, log, readAll, report, runMain, timed } from './report.js';

const MIB = 1024 * 1024;

async function findStat(dir: string): Promise<number> {
  const r = await spawnCollect(['find', dir, '-printf', '%i %s %m %U\n'], { timeoutMs: 600_000 });
  if (r.code !== 0) throw new Error(`find ${dir}: ${r.stderr.slice(0, 500)}`);
  return r.stdout.split('\n').length - 1;
}

async function main(): Promise<void> {
  const work = await makeTestDir('bench-reads');
  const reg = await startRegistry();
  const stores: Store[] = [];
  const fresh = async (name: string): Promise<Store> => {
    const s = await startStore({ dir: join(work, name), logLevel: 'warn' });
    stores.push(s);
    return s;
  };
  try {
    // --- 64 MiB file, eStargz ---
    const layers = (['base', 'features', 'big'] as const).map((n) => buildLayer(n, 'estargz'));
    await pushImage(reg, 'bench/feat', 'estargz', { layers: layers.map((l) => ({ bytes: l.bytes, mediaType: l.mediaType, diffId: l.diffId, annotations: l.annotations! })) });
    const ref = `${reg.host}/bench/feat:estargz`;
    const big = layers[2]!;
    const bigDigest = sha256(big.bytes);
    const bigPath = (s: Store): string => join(s.mountpoint, refElem(ref), big.tocDigest!, 'diff', P.big);

    const s1 = await fresh('s1');
    const cursor = new LogCursor(reg.logPath);
    await readFile(join(s1.mountpoint, refElem(ref), big.tocDigest!, 'info')); // resolve the layer (TOC) first
    const afterToc = blobBytes(cursor.since(), { agent: LAZY_ALS_AGENT }).get(bigDigest) ?? 0;
    await dropCaches();
    const [coldMs, n] = await timed(() => readAll(bigPath(s1)));
    if (n !== BIG_SIZE) throw new Error(`read ${n} bytes`);
    const fetched = blobBytes(cursor.since(), { agent: LAZY_ALS_AGENT }).get(bigDigest) ?? 0;
    const [curlMs] = await timed(async () => {
      const r = await spawnCollect(['curl', '-sf', '-o', '/dev/null', `${reg.url}/v2/bench/feat/blobs/${bigDigest}`]);
      if (r.code !== 0) throw new Error(`curl: ${r.stderr}`);
    });
    const g1 = '64 MiB file through the store (eStargz, loopback)';
    report({ group: g1, name: 'cold read vs curl of the whole layer blob', value: coldMs, baseline: curlMs, unit: 'ms' });
    report({ group: g1, name: 'bytes fetched (TOC + file) / layer blob size', value: fetched, baseline: big.bytes.length, unit: 'B', note: `TOC only: ${afterToc} B` });

    const local = join(work, 'local-big.bin');
    await writeFile(local, bigFile());
    await readAll(local);
    await readAll(bigPath(s1));
    const [warmMs] = await timed(() => readAll(bigPath(s1)));
    const [localMs] = await timed(() => readAll(local));
    report({ group: g1, name: 'warm re-read vs local disk (page cache)', value: warmMs, baseline: localMs, unit: 'ms' });
    // kernel cache dropped, the store's chunk cache warm: the daemon serves every read
    await dropCaches();
    const [daemonWarmMs] = await timed(() => readAll(bigPath(s1)));
    await dropCaches();
    const [localColdMs] = await timed(() => readAll(local));
    report({ group: g1, name: 're-read, kernel caches dropped, store cache warm vs local disk cold', value: daemonWarmMs, baseline: localColdMs, unit: 'ms' });

    // --- find + stat over a Debian rootfs layer (zstd:chunked by podman 5) ---
    log('rootfs layer: tar, gzip, zstd:chunked by podman 5…');
    const rootfs = await debianRootfs();
    const tarPath = join(work, 'rootfs.tar');
    await tarDir(rootfs, tarPath);
    const tar = await readFile(tarPath);
    await pushImage(reg, 'bench/rootfs', 'gzip', { layers: [{ bytes: gzipSync(tar), mediaType: MT_TAR_GZIP, diffId: sha256(tar) }] });
    const zc = await pushZstdChunked(reg, `${reg.host}/bench/rootfs:gzip`, 'bench/rootfs', 'zstdchunked');
    const toc = zc.layers[0]!.tocDigest!;
    const s2 = await fresh('s2');
    const diff = join(s2.mountpoint, refElem(zc.ref), toc, 'diff');
    await dropCaches();
    const [coldFind, entries] = await timed(() => findStat(diff));
    const [warmFind] = await timed(() => findStat(diff));
    await dropCaches();
    const [localColdFind, localEntries] = await timed(() => findStat(rootfs));
    const [localWarmFind] = await timed(() => findStat(rootfs));
    const g2 = `find + lstat of every entry, Debian minbase layer (${entries} entries, zstd:chunked)`;
    report({ group: g2, name: 'cold (fresh store, caches dropped) vs extracted copy cold', value: coldFind, baseline: localColdFind, unit: 'ms', note: `local entries ${localEntries}` });
    report({ group: g2, name: 'warm vs extracted copy warm', value: warmFind, baseline: localWarmFind, unit: 'ms' });
    report({ group: g2, name: 'store daemon peak RSS (VmHWM) after the walk', value: s2.peakRss() / MIB, unit: 'MiB' });
    report({ group: g1, name: 'store daemon peak RSS (VmHWM) after 3 reads of 64 MiB', value: s1.peakRss() / MIB, unit: 'MiB' });
  } finally {
    for (const s of stores) await s.stop().catch((e: unknown) => console.error(e));
    await reg.stop();
    await spawnCollect(['rm', '-rf', '--one-file-system', '--', work]);
  }
}

runMain(main);
