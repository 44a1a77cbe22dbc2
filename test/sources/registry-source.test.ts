import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DigestMismatchError } from '../../src/core/errors.js';
import type { Digest } from '../../src/core/digest.js';
import { SourceError } from '../../src/sources/errors.js';
import { parseReference } from '../../src/sources/reference.js';
import { findLayer } from '../../src/sources/source.js';
import type { RegistryBlob } from '../../src/sources/registry/registry-blob.js';
import { startRegistry, type RegistryHandle } from '../helpers/registry.js';
import { pushImage, pushIndex, sha256, type PushedImage } from '../helpers/registry-push.js';
import { testSource } from '../helpers/registry-source.js';

const EST = 'containerd.io/snapshot/stargz/toc.digest';
const ZST = 'io.github.containers.zstd-chunked.manifest-checksum';
const toc = (s: string): string => sha256(Buffer.from(s));

describe('RegistrySource against a real registry (no auth)', () => {
  let reg: RegistryHandle;
  let amd: PushedImage;
  let arm: PushedImage;
  let index: { digest: string; bytes: Buffer };
  const big = randomBytes(3 * 1024 * 1024 + 17);
  const source = testSource();

  beforeAll(async () => {
    reg = await startRegistry();
    amd = await pushImage(reg, 'e2e/multi', undefined, {
      layers: [{ bytes: big, annotations: { [ZST]: toc('amd-0') } }, { bytes: randomBytes(1000), annotations: { [EST]: toc('amd-1'), [ZST]: toc('both') } }],
    });
    arm = await pushImage(reg, 'e2e/multi', undefined, {
      platform: { os: 'linux', architecture: 'arm64', variant: 'v8' },
      layers: [{ bytes: randomBytes(500), annotations: { [EST]: toc('arm-0') } }],
    });
    index = await pushIndex(reg, 'e2e/multi', 'v1', [amd.manifest, arm.manifest]);
    await pushImage(reg, 'e2e/single', 'latest', { layers: [{ bytes: Buffer.from('hello layer') }] });
  });
  afterAll(async () => {
    await source.close();
    await reg?.stop();
  });

  it('resolves a single manifest by tag, computing its digest, with diff_ids from the config', async () => {
    const img = await source.resolve(parseReference(`${reg.host}/e2e/single`));
    expect(img.reference.string).toBe(`${reg.host}/e2e/single:latest`);
    expect(img.manifests).toHaveLength(1);
    const m = img.manifests[0]!;
    expect(img.digest).toBe(sha256(m.manifestBytes));
    expect(m.layers[0]!.diffId).toBe(sha256(Buffer.from('hello layer')));
    expect(img.sourceName).toContain(reg.host);
  });

  it('resolves every platform of an index and finds layers by blob or TOC digest', async () => {
    const img = await source.resolve(parseReference(`${reg.host}/e2e/multi:v1`));
    expect(img.digest).toBe(index.digest);
    expect(img.indexBytes?.equals(index.bytes)).toBe(true);
    expect(img.manifests.map((m) => m.digest)).toEqual([amd.manifest.digest, arm.manifest.digest]);
    expect(img.manifests[1]!.platform).toEqual({ os: 'linux', architecture: 'arm64', variant: 'v8' });
    const byBlob = findLayer(img, arm.layers[0]!.digest as Digest);
    expect(byBlob?.keyKind).toBe('blob');
    expect(byBlob?.manifest.digest).toBe(arm.manifest.digest);
    const byToc = findLayer(img, toc('arm-0') as Digest);
    expect(byToc?.keyKind).toBe('toc');
    expect(findLayer(img, toc('amd-0') as Digest)?.layer.index).toBe(0);
    // both annotations: no TOC digest, and a note says why
    const both = img.manifests[0]!.layers[1]!;
    expect(both.tocDigest).toBeUndefined();
    expect(both.notes?.[0]).toMatch(/both/);
    expect(findLayer(img, toc('both') as Digest)).toBeUndefined();
  });

  it('resolves by digest (and tag+digest drops the tag)', async () => {
    const img = await source.resolve(parseReference(`${reg.host}/e2e/multi:ignored@${amd.manifest.digest}`));
    expect(img.reference.string).toBe(`${reg.host}/e2e/multi@${amd.manifest.digest}`);
    expect(img.manifests).toHaveLength(1);
    expect(img.manifests[0]!.configDigest).toBe(amd.config.digest);
  });

  it('reports a missing image and a missing blob with typed errors', async () => {
    await expect(source.resolve(parseReference(`${reg.host}/e2e/multi:nope`))).rejects.toMatchObject({ code: 'IMAGE_NOT_FOUND' });
    const ref = parseReference(`${reg.host}/e2e/multi:v1`);
    await expect(source.openBlob(ref, sha256(Buffer.from('absent')) as Digest, undefined)).rejects.toMatchObject({ code: 'BLOB_NOT_FOUND' });
  });

  it('reads ranges; the real registry answers a multi-range request with multipart/byteranges', async () => {
    // Raw check of the server behaviour the client relies on.
    const raw = await fetch(`${reg.url}/v2/e2e/multi/blobs/${amd.layers[0]!.digest}`, { headers: { range: 'bytes=0-9,100000-100009' } });
    expect(raw.status).toBe(206);
    expect(raw.headers.get('content-type')).toMatch(/^multipart\/byteranges; boundary=/);
    await raw.arrayBuffer();

    const ref = parseReference(`${reg.host}/e2e/multi:v1`);
    const blob = (await source.openBlob(ref, amd.layers[0]!.digest as Digest, undefined)) as RegistryBlob;
    expect(blob.size).toBe(big.length);
    expect(await blob.read(5, 100)).toEqual(big.subarray(5, 105));
    expect(await blob.read(big.length - 7, 7)).toEqual(big.subarray(big.length - 7));
    const before = reg.accessLog().length;
    const ranges = [
      { offset: 2_000_000, length: 5000 },
      { offset: 10, length: 20 },
      { offset: 1_000_000, length: 65536 },
      { offset: 15, length: 100 }, // overlaps the second
      { offset: 2_000_000 + 5000 + 100, length: 10 }, // within the gap threshold of the first
      { offset: 0, length: 0 },
    ];
    const got = await blob.readMany(ranges);
    ranges.forEach((r, i) => expect(got[i]!.equals(big.subarray(r.offset, r.offset + r.length)), `range ${i}`).toBe(true));
    expect(blob.multiRange).toBe(true);
    const gets = reg.accessLog().slice(before).filter((l) => l.includes('GET /v2/e2e/multi/blobs/'));
    expect(gets).toHaveLength(1); // three merged ranges in one multi-range request
    await expect(blob.read(big.length - 1, 2)).rejects.toMatchObject({ code: 'BLOB_RANGE' });
  });

  it('uses the descriptor size and rejects a wrong one', async () => {
    const ref = parseReference(`${reg.host}/e2e/multi:v1`);
    const l = arm.layers[0]!;
    const blob = await source.openBlob(ref, l.digest as Digest, l.size);
    expect(blob.size).toBe(l.size);
    await expect(source.openBlob(ref, l.digest as Digest, l.size + 1)).rejects.toBeInstanceOf(SourceError);
  });

  it('verifies manifests fetched by digest', async () => {
    // A digest that exists under another content is impossible on a real registry; the mismatch
    // path is covered in registry-faults.test.ts. Here: DigestMismatchError is exported and typed.
    expect(new DigestMismatchError('x', 'a', 'b').code).toBe('DIGEST_MISMATCH');
  });
});
