import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Digest } from '../../src/core/digest.js';
import { DigestMismatchError } from '../../src/core/errors.js';
import { run as exportCmd } from '../../src/cli/commands/export.js';
import { run as resolveCmd } from '../../src/cli/commands/resolve.js';
import { blobPath, layoutDir, OciLayoutSource } from '../../src/sources/dfs/oci-layout.js';
import { parseReference } from '../../src/sources/reference.js';
import { SourceChain } from '../../src/sources/source-chain.js';
import { findLayer, type BlobSource } from '../../src/sources/source.js';
import { startRegistry, type RegistryHandle } from '../helpers/registry.js';
import { pushImage, pushIndex, sha256, type PushedImage } from '../helpers/registry-push.js';
import { testSource } from '../helpers/registry-source.js';

function io(): { stdout: PassThrough; stderr: PassThrough; out: () => string; err: () => string } {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let o = '';
  let e = '';
  stdout.on('data', (d) => (o += d));
  stderr.on('data', (d) => (e += d));
  return { stdout, stderr, out: () => o, err: () => e };
}

const ZST = 'io.github.containers.zstd-chunked.manifest-checksum';

describe('dfs OCI layout source + export + source chain', () => {
  let reg: RegistryHandle;
  let amd: PushedImage;
  let arm: PushedImage;
  let indexDigest: string;
  const root = mkdtempSync(join(tmpdir(), 'lazy-als-dfs-'));
  const l0 = randomBytes(700_000);
  const l1 = randomBytes(1234);
  let ref: string;

  beforeAll(async () => {
    reg = await startRegistry();
    amd = await pushImage(reg, 'dfs/app', undefined, { layers: [{ bytes: l0, annotations: { [ZST]: sha256(Buffer.from('toc0')) } }, { bytes: l1 }] });
    arm = await pushImage(reg, 'dfs/app', undefined, { platform: { os: 'linux', architecture: 'arm64' }, layers: [{ bytes: randomBytes(99) }] });
    indexDigest = (await pushIndex(reg, 'dfs/app', 'v2', [amd.manifest, arm.manifest])).digest;
    ref = `${reg.host}/dfs/app:v2`;
  });
  afterAll(async () => {
    await reg?.stop();
    rmSync(root, { recursive: true, force: true });
  });

  it('exports every platform into <root>/<domain>/<path>, verified', async () => {
    const s = io();
    const code = await exportCmd([ref, root], s);
    expect(s.err()).toBe('');
    expect(code).toBe(0);
    const dir = layoutDir(root, parseReference(ref));
    expect(dir).toBe(join(root, reg.host, 'dfs', 'app'));
    expect(JSON.parse(readFileSync(join(dir, 'oci-layout'), 'utf8'))).toEqual({ imageLayoutVersion: '1.0.0' });
    const index = JSON.parse(readFileSync(join(dir, 'index.json'), 'utf8'));
    expect(index.manifests).toHaveLength(1);
    expect(index.manifests[0]).toMatchObject({ digest: indexDigest, annotations: { 'org.opencontainers.image.ref.name': 'v2' } });
    for (const d of [amd.layers[0]!.digest, amd.layers[1]!.digest, arm.layers[0]!.digest, amd.config.digest, arm.manifest.digest]) {
      expect(existsSync(blobPath(dir, d as Digest))).toBe(true);
    }
    expect(readFileSync(blobPath(dir, amd.layers[0]!.digest as Digest)).equals(l0)).toBe(true);
    // idempotent: a second export writes nothing new
    const again = io();
    expect(await exportCmd([ref, root], again)).toBe(0);
    expect(again.out()).toMatch(/0 blobs written/);
  });

  it('resolves and reads through the dfs with the registry stopped; chain falls through to it', async () => {
    await reg.kill(); // registry gone: only the dfs can answer
    const dfs = new OciLayoutSource(root);
    const deadRegistry = testSource({ retry: { retries: 0 } });
    const chain: BlobSource = new SourceChain([dfs, deadRegistry]);
    try {
      const r = parseReference(ref);
      const img = await chain.resolve(r);
      expect(img.sourceName).toBe(`dfs ${root}`);
      expect(img.digest).toBe(indexDigest);
      expect(img.manifests.map((m) => m.digest)).toEqual([amd.manifest.digest, arm.manifest.digest]);
      const match = findLayer(img, sha256(Buffer.from('toc0')) as Digest);
      expect(match?.keyKind).toBe('toc');
      const blob = await chain.openBlob(r, match!.layer.digest, match!.layer.size);
      expect(await blob.read(12345, 1000)).toEqual(l0.subarray(12345, 13345));
      await blob.close?.();
      // by digest too
      const byDigest = await dfs.resolve(parseReference(`${reg.host}/dfs/app@${arm.manifest.digest}`));
      expect(byDigest.manifests[0]!.layers).toHaveLength(1);
      // CLI, dfs only (no network)
      const s = io();
      expect(await resolveCmd([ref, '--dfs', root, '--no-registry', '--json'], s)).toBe(0);
      const j = JSON.parse(s.out());
      expect(j.source).toBe(`dfs ${root}`);
      expect(j.manifests[0].layers[0]).toMatchObject({ digest: amd.layers[0]!.digest, size: l0.length, tocDigest: sha256(Buffer.from('toc0')), diffId: sha256(l0) });
      // an image the dfs lacks: dfs says not found, the dead registry's transport error is reported
      await expect(chain.resolve(parseReference(`${reg.host}/dfs/other:v1`))).rejects.toMatchObject({ code: 'REGISTRY_TRANSPORT' });
      await expect(new SourceChain([dfs]).openBlob(r, sha256(Buffer.from('nope')) as Digest, undefined)).rejects.toMatchObject({ code: 'BLOB_NOT_FOUND' });
    } finally {
      await chain.close?.();
    }
  });

  it('rejects a tampered manifest in the layout', async () => {
    const tampered = mkdtempSync(join(tmpdir(), 'lazy-als-dfs-bad-'));
    try {
      const r = parseReference(ref);
      const src = layoutDir(root, r);
      const dst = layoutDir(tampered, r);
      rmSync(dst, { recursive: true, force: true });
      await import('node:fs/promises').then((fs) => fs.cp(src, dst, { recursive: true }));
      const p = blobPath(dst, arm.manifest.digest as Digest);
      writeFileSync(p, readFileSync(p, 'utf8') + ' '); // still valid JSON, different digest
      await expect(new OciLayoutSource(tampered).resolve(r)).rejects.toBeInstanceOf(DigestMismatchError);
    } finally {
      rmSync(tampered, { recursive: true, force: true });
    }
  });
});
