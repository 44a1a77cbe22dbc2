/**
 * A writer of a `--dfs` tree must not serve other content under a registry image's blob digest
 * (audit H6), with real podman 4.3.1 (blob-digest lookups).
 *
 * Registry: `library/popular:v1`, one plain gzip layer B. The dfs tree holds a layout for the same
 * reference whose manifest lists layer B with an eStargz TOC annotation and whose file
 * `blobs/sha256/<hex of B>` is an eStargz of other content. The dfs is asked first. Under both
 * `era_a_toc_layers` modes the run must print the registry layer's content: the dfs file is hashed
 * whole before it is used for the blob-digest key and refused (`dfs.blob_digest_mismatch` warn line
 * naming B and the file's real digest).
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { gzipSync } from 'node:zlib';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPodman, makeTestDir, podmanPrerequisites, spawnCollect, type PodmanHandle } from '../helpers/podman.js';
import { startRegistry, type RegistryHandle } from '../helpers/registry.js';
import { pushImage } from '../helpers/registry-push.js';
import { buildTar } from '../helpers/writers/tar.js';
import { buildEStargz } from '../helpers/writers/estargz.js';
import { LEGIT, messageTree as tree, sha } from './message-image.js';
import { startStore, type Store } from './store.js';


let reg: RegistryHandle;
let work: string;
let dfsRoot: string;
let blobB: string;
let evilDigest: string;

beforeAll(async () => {
  const missing = podmanPrerequisites(4);
  if (missing.length > 0) throw new Error(`e2e prerequisites missing: ${missing.join(', ')} (scripts/setup.sh --e2e)`);
  reg = await startRegistry();
  work = await makeTestDir('dfs-bound');
  const legitTar = buildTar(tree(LEGIT));
  const v = await pushImage(reg, 'library/popular', 'v1', {
    layers: [{ bytes: gzipSync(legitTar), mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', diffId: sha(legitTar) }],
    config: { config: { Cmd: ['/bin/sh'] } },
  });
  blobB = v.layers[0]!.digest;
  // the dfs writer: same reference; "B" is an eStargz of other content, pinned by the layout's own annotation
  const evil = buildEStargz(tree('EVIL content from the dfs tree'));
  evilDigest = sha(evil.blob);
  dfsRoot = join(work, 'dfs');
  const dir = join(dfsRoot, reg.host, 'library', 'popular');
  await mkdir(join(dir, 'blobs', 'sha256'), { recursive: true });
  const put = async (b: Buffer, name = sha(b)): Promise<string> => {
    await writeFile(join(dir, 'blobs', 'sha256', name.slice(7)), b);
    return name;
  };
  await put(evil.blob, blobB);
  await put(v.configBytes);
  const m = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: v.config,
    layers: [{
      mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
      digest: blobB,
      size: evil.blob.length,
      annotations: { 'containerd.io/snapshot/stargz/toc.digest': evil.tocDigest, 'io.containers.estargz.uncompressed-size': String(evil.uncompressedSize) },
    }],
  }));
  const md = await put(m);
  await writeFile(join(dir, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
  await writeFile(join(dir, 'index.json'), JSON.stringify({
    schemaVersion: 2,
    manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: md, size: m.length, annotations: { 'org.opencontainers.image.ref.name': 'v1' } }],
  }));
}, 300_000);

afterAll(async () => {
  await reg?.stop();
  if (work) await spawnCollect(['rm', '-rf', '--one-file-system', '--', work]);
});

describe('podman 4.3.1 and a dfs tree holding other content under a registry blob digest', () => {
  it.each(['trust', 'verify'] as const)('era_a_toc_layers = %s: the run shows the registry layer, the dfs file is refused', async (mode) => {
    let store: Store | undefined;
    let pm: PodmanHandle | undefined;
    try {
      store = await startStore({ dir: join(work, mode, 'als'), insecureRegistries: [reg.host], eraATocLayers: mode, extraArgs: ['--dfs', dfsRoot] });
      pm = await createPodman(4, { workDir: join(work, mode, 'pm'), als: { dir: store.mountpoint }, registries: [{ host: reg.host, insecure: true }] });
      const image = `${reg.host}/library/popular:v1`;
      const pull = await pm.run(['pull', '-q', image]);
      expect(pull.code, pull.stderr).toBe(0);
      const run = await pm.run(['run', '--rm', image, 'cat', '/msg']);
      expect(run.code, run.stderr).toBe(0);
      expect(run.stdout.trim()).toBe(LEGIT);
      const warn = store.log().split('\n').filter((l) => l.includes('dfs.blob_digest_mismatch'));
      expect(warn.length, store.log().slice(-3000)).toBeGreaterThan(0);
      expect(warn[0]).toContain(blobB);
      expect(warn[0]).toContain(evilDigest);
    } finally {
      await pm?.cleanup();
      await store?.stop();
    }
  }, 300_000);
});
