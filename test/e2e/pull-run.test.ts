/**
 * End to end, per podman generation × layer format its era can take from an ALS:
 *   podman 4.3.1 (looks layers up by blob digest): gzip, zstd, eStargz, zstd:chunked;
 *   podman 5.4.2 (by TOC digest, TOC layers only): eStargz, zstd:chunked.
 * Real registry (docker-registry, access log), real `lazy-als serve` on a temp mountpoint (one per
 * combination), real podman with a storage of its own. Every claim is checked where it is visible:
 * the registry access log (who GET which blob, how many bytes), the container's view, the exported
 * layers, and the store's status (use counts).
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPodman, makeTestDir, podmanPrerequisites, spawnCollect, type PodmanHandle } from '../helpers/podman.js';
import { startRegistry, type RegistryHandle } from '../helpers/registry.js';
import {
  FILE_CAP_HEX,
  FILE_CAP_XATTR_HEX,
  CAP_RUN_ARGS,
  CAP_SCRIPT,
  CONTENT_SCRIPT,
  expectedContents,
  parseKeyValues,
  P,
  pushTestImages,
  storeKey,
  storePath,
  type Format,
  type TestImage,
  type TestImages,
} from './images.js';
import { blobBytes, blobGets, LAZY_ALS_AGENT, LogCursor, PODMAN_AGENT } from './registry-log.js';
import { startStore, useCount, type Store } from './store.js';

const COMBOS: readonly [4 | 5, Format][] = [
  [4, 'gzip'],
  [4, 'zstd'],
  [4, 'estargz'],
  [4, 'zstdchunked'],
  [5, 'estargz'],
  [5, 'zstdchunked'],
];

let reg: RegistryHandle;
let images: TestImages;
const dirs: string[] = [];

beforeAll(async () => {
  // no skipping: a machine without root, /dev/fuse or the podmans fails here, loudly
  const missing = [...new Set([...podmanPrerequisites(4), ...podmanPrerequisites(5)])];
  if (missing.length > 0) throw new Error(`e2e prerequisites missing: ${missing.join(', ')} (scripts/setup.sh --e2e)`);
  reg = await startRegistry();
  images = await pushTestImages(reg);
}, 600_000);

afterAll(async () => {
  await reg?.stop();
  for (const d of dirs) await spawnCollect(['rm', '-rf', '--one-file-system', '--', d]);
});

function sha256(b: Buffer): string {
  return 'sha256:' + createHash('sha256').update(b).digest('hex');
}

async function registryBlob(digest: string, repo: string): Promise<Buffer> {
  const r = await fetch(`${reg.url}/v2/${repo}/blobs/${digest}`);
  if (r.status !== 200) throw new Error(`GET blob ${digest}: HTTP ${r.status}`);
  return Buffer.from(await r.arrayBuffer());
}

/** The uncompressed tar of a registry blob, decompressed by independent tools (zlib, zstd CLI). */
async function decompressed(img: TestImage, i: number): Promise<Buffer> {
  const l = img.layers[i]!;
  const blob = await registryBlob(l.digest, img.repo);
  if (l.mediaType.endsWith('+gzip')) return gunzipSync(blob);
  return new Promise<Buffer>((resolve, reject) => {
    const c = spawn('zstd', ['-dcq'], { stdio: ['pipe', 'pipe', 'inherit'] });
    const out: Buffer[] = [];
    c.stdout.on('data', (b: Buffer) => out.push(b));
    c.on('error', reject);
    c.on('close', (code: number) => (code === 0 ? resolve(Buffer.concat(out)) : reject(new Error(`zstd -d exited ${code}`))));
    c.stdin.end(blob);
  });
}

describe.each(COMBOS)('podman %i × %s', (version, format) => {
  let store: Store;
  let pm: PodmanHandle;
  let img: TestImage;
  let keys: string[];

  beforeAll(async () => {
    img = images.feat[format];
    keys = img.layers.map((l) => storeKey(l, version)!);
    const dir = await makeTestDir(`pr${version}`);
    dirs.push(dir);
    store = await startStore({ dir });
    pm = await createPodman(version, { workDir: join(dir, 'podman'), als: { dir: store.mountpoint }, registries: [{ host: reg.host, insecure: true }] });
  });

  afterAll(async () => {
    await pm?.cleanup();
    await store?.stop();
  });

  it('pulls through the store: podman GETs no layer blob; the store fetches only what it needs', async () => {
    const log = new LogCursor(reg.logPath);
    await pm.run(['pull', '-q', img.ref], { check: true });
    const entries = log.since();
    // podman fetched the config and nothing else
    expect(blobGets(entries, { agent: PODMAN_AGENT })).toEqual([img.configDigest]);
    const layerDigests = img.layers.map((l) => l.digest);
    const storeGets = blobGets(entries, { agent: LAZY_ALS_AGENT });
    for (const d of storeGets) expect([...layerDigests, img.configDigest]).toContain(d);
    const bytes = blobBytes(entries, { agent: LAZY_ALS_AGENT });
    const big = img.layers[2]!;
    if (format === 'gzip' || format === 'zstd') {
      // plain layers are fetched whole, once each (plus a few bytes of format detection)
      for (const l of img.layers) expect(bytes.get(l.digest) ?? 0).toBeLessThanOrEqual(l.size + 4096);
    } else {
      // TOC layers: only the TOC (and footer) of the 64 MiB layer before anything runs
      expect(bytes.get(big.digest) ?? 0).toBeLessThan(big.size * 0.05);
    }
    // every layer is in use by this storage
    const st = await store.status();
    for (const k of keys) expect(useCount(st, img.ref, k)).toBeGreaterThanOrEqual(1);
  });

  it('runs the image: base, whiteouts, opaque dir, hardlinks, symlinks, long and unicode names, the 64 MiB file', async () => {
    const log = new LogCursor(reg.logPath);
    const r = await pm.run(['run', '--rm', img.ref, 'sh', '-c', CONTENT_SCRIPT], { check: true });
    expect(parseKeyValues(r.stdout)).toEqual(expectedContents());
    // still nothing by podman; the store fetched the big file's chunks at most once
    const entries = log.since();
    expect(blobGets(entries, { agent: PODMAN_AGENT })).toEqual([]);
    const big = img.layers[2]!;
    expect(blobBytes(entries, { agent: LAZY_ALS_AGENT }).get(big.digest) ?? 0).toBeLessThanOrEqual(big.size);
  });

  it('the kernel honours the file capability read through the store', async () => {
    const r = await pm.run(['run', '--rm', ...CAP_RUN_ARGS, img.ref, 'sh', '-c', CAP_SCRIPT], { check: true });
    expect(parseKeyValues(r.stdout)).toEqual({ capped: FILE_CAP_HEX, plain: '0000000000000000' });
    // and the xattr is visible on the store's diff tree as written in the tar
    const capFile = join(storePath(store.mountpoint, img.ref, keys[1]!), 'diff', P.cap);
    const g = await spawnCollect(['getfattr', '--absolute-names', '-e', 'hex', '-n', 'security.capability', capFile]);
    expect(g.stdout).toContain(`security.capability=${FILE_CAP_XATTR_HEX}`);
  });

  it('exports layers byte-identical to the registry blobs (decompressed): podman push dir:', async () => {
    const out = join(pm.workDir, 'export');
    await pm.run(['push', '-q', img.ref, `dir:${out}`], { check: true });
    const manifest = JSON.parse(await readFile(join(out, 'manifest.json'), 'utf8')) as { layers: { digest: string }[] };
    expect(manifest.layers).toHaveLength(3);
    for (let i = 0; i < 3; i++) {
      const d = manifest.layers[i]!.digest;
      const exported = await readFile(join(out, d.slice('sha256:'.length)));
      const want = await decompressed(img, i);
      expect(sha256(exported)).toBe(img.layers[i]!.diffId);
      expect(exported.equals(want)).toBe(true);
    }
    expect((await readdir(out)).length).toBeGreaterThanOrEqual(5);
  });

  it('rmi releases the layers in the store (use counts back to 0); a second pull works without layer GETs', async () => {
    const before = await store.status();
    for (const k of keys) expect(useCount(before, img.ref, k)).toBeGreaterThanOrEqual(1);
    await pm.run(['rmi', img.ref], { check: true });
    const after = await store.status();
    for (const k of keys) expect(useCount(after, img.ref, k)).toBe(0);

    const log = new LogCursor(reg.logPath);
    await pm.run(['pull', '-q', img.ref], { check: true });
    expect(blobGets(log.since(), { agent: PODMAN_AGENT })).toEqual([img.configDigest]);
    const r = await pm.run(['run', '--rm', img.ref, 'cat', `/${P.base}`], { check: true });
    expect(r.stdout).toBe('hello from base layer\n');
  });
});
