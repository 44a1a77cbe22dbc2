/**
 * End to end, the promise "every byte ever served is served again after a restart, offline":
 * podman 5 (TOC-digest keys) runs a real Debian minbase rootfs image written by podman itself as
 * zstd:chunked (ELF binaries, so the layer has `zeros` hole chunks and many small chunks read ahead),
 * the store is stopped with SIGTERM, the registry is stopped, the store starts again on the same
 * state dir, and the same command must give the same output — with no source to fall back on.
 * Before the fix, hole chunks opened the blob (the registry) on every read, and the second run
 * crashed `dash` (exit 139, `fuse.read_failed` at offset 0).
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanupPodmanFixtures, podmanZstdChunkedLayer, type PodmanLayerFixture } from '../helpers/fixtures-podman.js';
import { createPodman, makeTestDir, podmanPrerequisites, spawnCollect, type PodmanHandle } from '../helpers/podman.js';
import { startRegistry, type RegistryHandle } from '../helpers/registry.js';
import { pushBlob, pushManifest, OCI_MANIFEST } from '../helpers/registry-push.js';
import { debianRootfs } from '../helpers/rootfs.js';
import { servedLayers, startStore, type Store } from './store.js';

let reg: RegistryHandle | undefined;
let fx: PodmanLayerFixture;
const cleanups: (() => Promise<unknown>)[] = [];

beforeAll(async () => {
  const missing = podmanPrerequisites(5);
  if (missing.length > 0) throw new Error(`e2e prerequisites missing: ${missing.join(', ')} (scripts/setup.sh --e2e)`);
  fx = await podmanZstdChunkedLayer(await debianRootfs());
  reg = await startRegistry();
  // Push podman's own blobs and manifest unchanged (same digests, same annotations).
  const repo = 'e2e/debian';
  for (const l of fx.layers) await pushBlob(reg, repo, await readFile(l.blobPath));
  await pushBlob(reg, repo, await readFile(join(fx.manifestPath, '..', fx.configDigest.split(':')[1]!)));
  await pushManifest(reg, repo, 'zstdchunked', await readFile(fx.manifestPath), fx.manifest.mediaType ?? OCI_MANIFEST);
}, 1_800_000);

afterAll(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn().catch(() => undefined);
  await reg?.stop();
  await cleanupPodmanFixtures();
}, 300_000);

describe('offline restart with a Debian rootfs (podman 5, zstd:chunked)', () => {
  it('a command that ran before a SIGTERM restart runs again with the registry stopped', async () => {
    const r = reg!;
    const dir = await makeTestDir('offd');
    cleanups.push(() => spawnCollect(['rm', '-rf', '--one-file-system', '--', dir]));
    const store: Store = await startStore({ dir });
    cleanups.push(() => store.stop());
    const pm: PodmanHandle = await createPodman(5, {
      workDir: join(dir, 'p5'),
      als: { dir: store.mountpoint },
      registries: [{ host: r.host, insecure: true }],
    });
    cleanups.push(() => pm.cleanup());
    const ref = `${r.host}/e2e/debian:zstdchunked`;
    const cmd = ['run', '--rm', '--network=none', ref, 'sh', '-c', 'head -1 /etc/os-release'];

    await pm.run(['pull', '-q', ref], { check: true, timeoutMs: 600_000 });
    const first = await pm.run(cmd, { check: true });
    expect(first.stdout).toMatch(/^PRETTY_NAME="Debian GNU\/Linux/);

    // The layer was served lazily (not pulled whole by podman), and what was fetched is on disk:
    // the status that showed 2,709,406 bytes fetched vs 2,666,831 cached counted hole chunks as
    // fetched (they never come from the source, and are never cached).
    await store.settle();
    const layer = servedLayers(await store.status()).find((l) => l.key === fx.layer.tocDigest);
    expect(layer).toBeDefined();
    expect(layer!.fetchedBytes).toBeGreaterThan(0);
    expect(layer!['cachedBytes']).toBeGreaterThanOrEqual(layer!.fetchedBytes);

    await store.stop(); // SIGTERM
    await r.stop();
    reg = undefined;
    await store.restart();

    const second = await pm.run(cmd, {});
    expect({ code: second.code, stderr: second.stderr }).toEqual({ code: 0, stderr: '' });
    expect(second.stdout).toBe(first.stdout);
    const log = store.log();
    expect(log).not.toContain('fuse.read_failed');
    // Nothing was fetched after the restart: every byte came from the cache.
    const after = servedLayers(await store.status()).find((l) => l.key === fx.layer.tocDigest);
    expect(after?.fetchedBytes ?? 0).toBe(0);
  }, 900_000);
});
