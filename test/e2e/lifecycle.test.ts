/**
 * End to end: the store's life around podman — restarts (SIGTERM and kill -9) between pull and
 * run, running offline with the registry stopped, parallel pulls of images sharing layers, podman 4
 * and podman 5 on one mount at once, and a multi-platform index. A fresh store (state dir and
 * mountpoint) and fresh podman storages per test; one registry for the file.
 */
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createPodman, makeTestDir, podmanPrerequisites, spawnCollect, type PodmanHandle } from '../helpers/podman.js';
import { startRegistry, type RegistryHandle } from '../helpers/registry.js';
import { CONTENT, CONTENT_SCRIPT, expectedContents, P, parseKeyValues, pushTestImages, type TestImage, type TestImages } from './images.js';
import { blobBytes, blobGets, LAZY_ALS_AGENT, LogCursor, PODMAN_AGENT } from './registry-log.js';
import { mountAt, startStore, type Store } from './store.js';

let reg: RegistryHandle;
let images: TestImages;
const cleanups: (() => Promise<void>)[] = [];

beforeAll(async () => {
  // no skipping: a machine without root, /dev/fuse or the podmans fails here, loudly
  const missing = [...new Set([...podmanPrerequisites(4), ...podmanPrerequisites(5)])];
  if (missing.length > 0) throw new Error(`e2e prerequisites missing: ${missing.join(', ')} (scripts/setup.sh --e2e)`);
  reg = await startRegistry();
  images = await pushTestImages(reg);
}, 600_000);

afterEach(async () => {
  const errors: unknown[] = [];
  for (const fn of cleanups.splice(0).reverse()) await fn().catch((e: unknown) => errors.push(e));
  if (errors.length) throw new AggregateError(errors, 'cleanup');
});

afterAll(async () => {
  await reg?.stop();
});

interface Env {
  store: Store;
  dir: string;
  podman(version: 4 | 5): Promise<PodmanHandle>;
}

/** A fresh store and a way to make podman storages that use it; all cleaned up after the test. */
async function env(): Promise<Env> {
  const dir = await makeTestDir('lc');
  cleanups.push(() => spawnCollect(['rm', '-rf', '--one-file-system', '--', dir]).then(() => undefined));
  const store = await startStore({ dir });
  cleanups.push(() => store.stop());
  let n = 0;
  return {
    store,
    dir,
    async podman(version) {
      const pm = await createPodman(version, {
        workDir: join(dir, `p${version}-${++n}`),
        als: { dir: store.mountpoint },
        registries: [{ host: reg.host, insecure: true }],
      });
      cleanups.push(() => pm.cleanup());
      return pm;
    },
  };
}

async function pull(pm: PodmanHandle, img: TestImage | string, extra: string[] = []): Promise<void> {
  await pm.run(['pull', '-q', ...extra, typeof img === 'string' ? img : img.ref], { check: true, timeoutMs: 300_000 });
}

async function contents(pm: PodmanHandle, ref: string): Promise<Record<string, string>> {
  const r = await pm.run(['run', '--rm', ref, 'sh', '-c', CONTENT_SCRIPT], { check: true });
  return parseKeyValues(r.stdout);
}

describe('store restarts', () => {
  it('SIGTERM + restart between pull and run, then kill -9 + restart: the image still runs, from the cache', async () => {
    const e = await env();
    const p5 = await e.podman(5);
    const img = images.feat.zstdchunked;
    await pull(p5, img);

    await e.store.stop();
    expect(mountAt(e.store.mountpoint)).toBeUndefined();
    await e.store.restart();
    expect(await contents(p5, img.ref)).toEqual(expectedContents());

    // A kill -9 loses cache writes still in flight (read-ahead, background stores), by design;
    // this test is about what was persisted, so let them land first.
    await e.store.settle();
    await e.store.kill9();
    await e.store.restart();
    const log = new LogCursor(reg.logPath);
    expect(await contents(p5, img.ref)).toEqual(expectedContents());
    // everything this run read was read before the crash: served from the on-disk cache
    expect(blobBytes(log.since(), { agent: LAZY_ALS_AGENT }).get(img.layers[2]!.digest) ?? 0).toBe(0);
    expect(blobGets(log.since(), { agent: PODMAN_AGENT })).toEqual([]);
  });

  it('podman 4 (blob-digest keys) survives a kill -9 between pull and run', async () => {
    const e = await env();
    const p4 = await e.podman(4);
    const img = images.feat.gzip;
    await pull(p4, img);
    await e.store.kill9();
    await e.store.restart();
    expect(await contents(p4, img.ref)).toEqual(expectedContents());
  });
});

describe('offline', () => {
  it('runs with the registry stopped once the layers were fetched (served from the cache after a store restart)', async () => {
    const e = await env();
    const p5 = await e.podman(5);
    const p4 = await e.podman(4);
    const toc = images.feat.estargz;
    const plain = images.feat.zstd;
    await pull(p5, toc);
    await pull(p4, plain);
    expect(await contents(p5, toc.ref)).toEqual(expectedContents());
    expect(await contents(p4, plain.ref)).toEqual(expectedContents());
    await reg.kill();
    try {
      await e.store.stop();
      await e.store.restart();
      expect(await contents(p5, toc.ref)).toEqual(expectedContents());
      expect(await contents(p4, plain.ref)).toEqual(expectedContents());
    } finally {
      await reg.restart();
    }
  });
});

describe('sharing', () => {
  it('two images sharing layers pulled in parallel (podman 4, gzip): each shared blob fetched once', async () => {
    const e = await env();
    const p4 = await e.podman(4);
    const a = images.feat.gzip;
    const b = images.other.gzip;
    const log = new LogCursor(reg.logPath);
    await Promise.all([pull(p4, a), pull(p4, b)]);
    const entries = log.since();
    expect(blobGets(entries, { agent: PODMAN_AGENT }).sort()).toEqual([a.configDigest, b.configDigest].sort());
    const bytes = blobBytes(entries, { agent: LAZY_ALS_AGENT });
    for (const l of [...a.layers, ...b.layers]) expect(bytes.get(l.digest) ?? 0).toBeLessThanOrEqual(l.size + 4096);
    expect(await contents(p4, a.ref)).toEqual(expectedContents());
    const r = await p4.run(['run', '--rm', b.ref, 'sh', '-c', `cat /${P.other} /${P.base} /${P.layer1}`], { check: true });
    expect(r.stdout).toBe(CONTENT.other + CONTENT.base + CONTENT.layer1);
  });

  it('two images sharing layers pulled in parallel (podman 5, eStargz)', async () => {
    const e = await env();
    const p5 = await e.podman(5);
    const a = images.feat.estargz;
    const b = images.other.estargz;
    const log = new LogCursor(reg.logPath);
    await Promise.all([pull(p5, a), pull(p5, b)]);
    expect(blobGets(log.since(), { agent: PODMAN_AGENT }).sort()).toEqual([a.configDigest, b.configDigest].sort());
    const [ra, rb] = await Promise.all([
      contents(p5, a.ref),
      p5.run(['run', '--rm', b.ref, 'sh', '-c', `cat /${P.other} /${P.opqNew}`], { check: true }),
    ]);
    expect(ra).toEqual(expectedContents());
    expect(rb.stdout).toBe(CONTENT.other + CONTENT.opqNew);
  });

  it('podman 4 and podman 5 use one mount at the same time (same eStargz blobs, by blob and by TOC digest)', async () => {
    const e = await env();
    const [p4, p5] = await Promise.all([e.podman(4), e.podman(5)]);
    const img = images.feat.estargz;
    const log = new LogCursor(reg.logPath);
    await Promise.all([pull(p4, img), pull(p5, img), pull(p5, images.feat.zstdchunked)]);
    expect(blobGets(log.since(), { agent: PODMAN_AGENT }).sort()).toEqual([...new Set([img.configDigest, images.feat.zstdchunked.configDigest])].sort());
    const [c4, c5, c5b] = await Promise.all([contents(p4, img.ref), contents(p5, img.ref), contents(p5, images.feat.zstdchunked.ref)]);
    expect(c4).toEqual(expectedContents());
    expect(c5).toEqual(expectedContents());
    expect(c5b).toEqual(expectedContents());
    const st = await e.store.status();
    expect(st.fuse.openFiles).toBe(0);
  });
});

describe('multi-platform index', () => {
  for (const version of [4, 5] as const) {
    it(`podman ${version}: amd64 and arm64 from one index, the shared base layer served for both`, async () => {
      const e = await env();
      const pm = await e.podman(version);
      const { ref, amd64, arm64 } = images.multi;
      const log = new LogCursor(reg.logPath);
      await pull(pm, ref);
      const r1 = await pm.run(['run', '--rm', ref, 'sh', '-c', `cat /${P.base} /${P.layer1}; test -e /${P.arm64} || echo no-arm64`], { check: true });
      expect(r1.stdout).toBe(CONTENT.base + CONTENT.layer1 + 'no-arm64\n');
      await pull(pm, ref, ['--arch', 'arm64']);
      const r2 = await pm.run(['run', '--rm', ref, 'sh', '-c', `cat /${P.base} /${P.arm64}; test -e /${P.layer1} || echo no-layer1`], { check: true });
      expect(r2.stdout).toBe(CONTENT.base + CONTENT.arm64 + 'no-layer1\n');
      // podman fetched both configs and no layer
      const got = blobGets(log.since(), { agent: PODMAN_AGENT });
      for (const l of [...amd64.layers, ...arm64.layers]) expect(got).not.toContain(l.digest);
      expect(got).toEqual(expect.arrayContaining([amd64.configDigest, arm64.configDigest]));
    });
  }
});
