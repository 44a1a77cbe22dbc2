/**
 * Cross-image layer substitution through podman ≤ 5.0 (audit H5), with real podman 4.3.1.
 *
 * podman 4 looks layers up by blob digest and derives the layer ID from `info`'s diff-digest; a later
 * image whose config names the same diff_id reuses that layer. The attacker image: one eStargz layer
 * (TOC pinned by its annotation) whose config claims the diff_id of `library/popular:v1`'s plain gzip
 * layer. Under `era_a_toc_layers = "verify"` (the default) the attacker layer must be fetched whole and
 * its diff_id checked before it is served: it is refused (warn line naming layer and both digests),
 * podman pulls it itself (4.3.1 records it under the diff_id it computes), and `library/popular:v1`
 * then runs its own content. Under `trust` the substitution happens (the stated
 * risk of that mode; checked so the test shows it can see the attack).
 */
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

const EVIL = 'EVIL content from the attacker image';

let reg: RegistryHandle;
let work: string;
let legitDiffId: string;
let evilDiffId: string;
let evilBlob: string;

beforeAll(async () => {
  const missing = podmanPrerequisites(4);
  if (missing.length > 0) throw new Error(`e2e prerequisites missing: ${missing.join(', ')} (scripts/setup.sh --e2e)`);
  reg = await startRegistry();
  work = await makeTestDir('era-a-poison');
  const legitTar = buildTar(tree(LEGIT));
  legitDiffId = sha(legitTar);
  const config = { config: { Cmd: ['/bin/sh'] } };
  await pushImage(reg, 'library/popular', 'v1', { layers: [{ bytes: gzipSync(legitTar), mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', diffId: legitDiffId }], config });
  const evil = buildEStargz(tree(EVIL));
  evilDiffId = evil.diffId;
  const pushed = await pushImage(reg, 'attacker/innocent', 'v1', {
    layers: [{
      bytes: evil.blob,
      mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
      annotations: { 'containerd.io/snapshot/stargz/toc.digest': evil.tocDigest, 'io.containers.estargz.uncompressed-size': String(evil.uncompressedSize) },
      diffId: legitDiffId, // the lie: the popular layer's public diff_id
    }],
    config: { config: { Cmd: ['/bin/sh'], Labels: { innocent: 'yes' } } }, // an image of its own (another image ID)
  });
  evilBlob = pushed.layers[0]!.digest;
}, 300_000);

afterAll(async () => {
  await reg?.stop();
  if (work) await spawnCollect(['rm', '-rf', '--one-file-system', '--', work]);
});

async function attack(mode: 'verify' | 'trust'): Promise<{ pullAttacker: number; pullAttackerErr: string; msg: string; store: Store }> {
  let store: Store | undefined;
  let pm: PodmanHandle | undefined;
  try {
    store = await startStore({ dir: join(work, mode, 'als'), insecureRegistries: [reg.host], eraATocLayers: mode });
    pm = await createPodman(4, { workDir: join(work, mode, 'pm'), als: { dir: store.mountpoint }, registries: [{ host: reg.host, insecure: true }] });
    const attacker = `${reg.host}/attacker/innocent:v1`;
    const popular = `${reg.host}/library/popular:v1`;
    const r1 = await pm.run(['pull', '-q', attacker]);
    const r2 = await pm.run(['pull', '-q', popular]);
    expect(r2.code, r2.stderr).toBe(0);
    const r3 = await pm.run(['run', '--rm', popular, 'cat', '/msg']);
    expect(r3.code, r3.stderr).toBe(0);
    return { pullAttacker: r1.code, pullAttackerErr: r1.stderr, msg: r3.stdout.trim(), store };
  } finally {
    await pm?.cleanup();
    await store?.stop();
  }
}

describe('podman 4.3.1: an eStargz image whose config claims another image’s diff_id', () => {
  it('verify (default): the attacker layer is refused and the popular image runs its own content', async () => {
    const { msg, store } = await attack('verify');
    expect(msg).toBe(LEGIT);
    // (podman 4.3.1 then unpacks the attacker blob itself and records it under the diff_id it computes)
    const refusal = store
      .log()
      .split('\n')
      .filter((l) => l.includes('catalog.layer_refused') && l.includes(evilBlob));
    expect(refusal.length, store.log().slice(-3000)).toBeGreaterThan(0);
    expect(refusal.join('\n')).toContain(legitDiffId);
    expect(refusal.join('\n')).toContain(evilDiffId);
  }, 300_000);

  it('trust: the substitution the docs warn about happens (the test can see the attack)', async () => {
    const { pullAttacker, pullAttackerErr, msg } = await attack('trust');
    expect(pullAttacker, pullAttackerErr).toBe(0);
    expect(msg).toBe(EVIL);
  }, 300_000);
});
