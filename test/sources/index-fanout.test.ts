/**
 * Issue 9, row 7: an image index with hundreds of entries is scanned lazily and boundedly: platform
 * manifests one at a time (the host's platform first), stopping at the one the store key is in, and
 * never more than `maxIndexEntries` of them; only the scanned manifests are kept. Real registry;
 * a counting pass-through proxy in front of it (it changes nothing) to see every request.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Digest } from '../../src/core/digest.js';
import { DEFAULT_MAX_INDEX_ENTRIES, hostPlatform } from '../../src/sources/image-resolver.js';
import { parseReference } from '../../src/sources/reference.js';
import { findLayer, manifestHasKey } from '../../src/sources/source.js';
import { startRegistry, type RegistryHandle } from '../helpers/registry.js';
import { startHttpProxy, type HttpFake } from '../helpers/registry-proxy.js';
import { OCI_CONFIG, OCI_LAYER_GZIP, OCI_MANIFEST, pushBlob, pushIndex, pushManifest, sha256, type PushedDescriptor } from '../helpers/registry-push.js';
import { testSource } from '../helpers/registry-source.js';

const ENTRIES = 400;
const HOST_AT = 350;

describe('an image index with hundreds of entries', () => {
  let reg: RegistryHandle;
  let front: HttpFake;
  let indexBytes: Buffer;
  let hostKey: Digest;
  let lateKey: Digest;

  beforeAll(async () => {
    reg = await startRegistry();
    const repo = 'fan/app';
    const layerA = await pushBlob(reg, repo, Buffer.from('shared layer'));
    const layerHost = await pushBlob(reg, repo, Buffer.from('the host platform layer'));
    const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [sha256(Buffer.from('x'))] } }));
    const cfg = await pushBlob(reg, repo, config);
    const host = hostPlatform();
    const descs: PushedDescriptor[] = [];
    for (let i = 0; i < ENTRIES; i++) {
      const layer = i === HOST_AT ? layerHost : i === ENTRIES - 1 ? { digest: sha256(Buffer.from('late')), size: 4 } : layerA;
      if (i === ENTRIES - 1) await pushBlob(reg, repo, Buffer.from('late'));
      const m = Buffer.from(JSON.stringify({
        schemaVersion: 2, mediaType: OCI_MANIFEST,
        config: { mediaType: OCI_CONFIG, digest: cfg.digest, size: cfg.size },
        layers: [{ mediaType: OCI_LAYER_GZIP, digest: layer.digest, size: layer.size }],
        annotations: { n: String(i) },
      }));
      const digest = await pushManifest(reg, repo, sha256(m), m, OCI_MANIFEST);
      const platform = i === HOST_AT ? { os: host.os, architecture: host.architecture } : { os: 'linux', architecture: `fake${i}` };
      descs.push({ mediaType: OCI_MANIFEST, digest, size: m.length, platform });
    }
    indexBytes = (await pushIndex(reg, repo, 'many', descs)).bytes;
    hostKey = layerHost.digest as Digest;
    lateKey = sha256(Buffer.from('late')) as Digest;
    front = await startHttpProxy(reg.url);
  }, 300_000);
  afterAll(async () => {
    await front?.stop();
    await reg?.stop();
  });

  const documentGets = (): number => front.requests.filter((r) => r.method === 'GET' && /\/(manifests|blobs)\//.test(r.url)).length;

  it('finding the host platform’s layer costs 3 requests (index, its manifest, its config) and keeps one manifest', async () => {
    expect(indexBytes.length).toBeGreaterThan(60_000);
    const src = testSource();
    try {
      const before = documentGets();
      const img = await src.resolve(parseReference(`${front.host}/fan/app:many`), undefined, (m) => manifestHasKey(m, hostKey));
      expect(documentGets() - before).toBe(3);
      expect(img.manifests.length).toBe(1);
      expect(findLayer(img, hostKey)?.layer.digest).toBe(hostKey);
      expect(img.complete).toBe(false);
    } finally {
      await src.close();
    }
  });

  it('a key in the last entry, or a full listing: at most maxIndexEntries manifests fetched and kept', async () => {
    const src = testSource();
    try {
      let before = documentGets();
      const late = await src.resolve(parseReference(`${front.host}/fan/app:many`), undefined, (m) => manifestHasKey(m, lateKey));
      expect(documentGets() - before).toBeLessThanOrEqual(1 + 2 * DEFAULT_MAX_INDEX_ENTRIES);
      expect(late.manifests.length).toBeLessThanOrEqual(DEFAULT_MAX_INDEX_ENTRIES);
      expect(findLayer(late, lateKey)).toBeUndefined(); // beyond the bound: not served (podman pulls normally)
      before = documentGets();
      const all = await src.resolve(parseReference(`${front.host}/fan/app:many`));
      expect(documentGets() - before).toBeLessThanOrEqual(1 + 2 * DEFAULT_MAX_INDEX_ENTRIES);
      expect(all.manifests.length).toBe(DEFAULT_MAX_INDEX_ENTRIES);
      expect(all.manifests[0]!.platform?.architecture).toBe(hostPlatform().architecture); // host first
    } finally {
      await src.close();
    }
  });
});
