/**
 * One suite every blob source runs: a new source gets all of it by adding one line to SOURCES.
 * The same image (two layers, one of them carrying a TOC annotation) is pushed to a real
 * docker-registry and exported into a dfs root (`lazy-als export`); each source must resolve it to
 * the same verified manifest, find layers by blob and by TOC digest, serve exact byte ranges, and
 * refuse what it does not have (unknown reference, unknown digest, wrong size) with a coded error.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { run as exportCmd } from '../../src/cli/commands/export.js';
import type { Digest } from '../../src/core/digest.js';
import { LazyAlsError } from '../../src/core/errors.js';
import { OciLayoutSource } from '../../src/sources/dfs/oci-layout.js';
import { parseReference } from '../../src/sources/reference.js';
import { SourceChain } from '../../src/sources/source-chain.js';
import { findLayer, type BlobSource } from '../../src/sources/source.js';
import { startRegistry, type RegistryHandle } from '../helpers/registry.js';
import { pushImage, sha256, type PushedImage } from '../helpers/registry-push.js';
import { testSource } from '../helpers/registry-source.js';

const ZSTD_CHUNKED_CHECKSUM = 'io.github.containers.zstd-chunked.manifest-checksum';
const TOC = sha256(Buffer.from('toc of layer 0')) as Digest;

interface World {
  readonly reg: RegistryHandle;
  readonly dfsRoot: string;
  readonly emptyRoot: string;
}

/** source name → how to build it over the world (the registry and the dfs root holding the same image). */
const SOURCES: readonly [string, (w: World) => BlobSource][] = [
  ['registry', () => testSource()],
  ['dfs', (w) => new OciLayoutSource(w.dfsRoot)],
  // A chain whose first source has nothing: every answer must come from the second.
  ['chain (empty dfs, then registry)', (w) => new SourceChain([new OciLayoutSource(w.emptyRoot), testSource()])],
  ['chain (dfs, then registry)', (w) => new SourceChain([new OciLayoutSource(w.dfsRoot), testSource()])],
];

describe('blob source conformance', () => {
  let world: World;
  let image: PushedImage;
  let ref: string;
  const layer0 = randomBytes(300_000);
  const layer1 = randomBytes(777);

  beforeAll(async () => {
    const reg = await startRegistry();
    world = { reg, dfsRoot: mkdtempSync(join(tmpdir(), 'lazy-als-arch-dfs-')), emptyRoot: mkdtempSync(join(tmpdir(), 'lazy-als-arch-empty-')) };
    image = await pushImage(reg, 'conf/app', 'v1', { layers: [{ bytes: layer0, annotations: { [ZSTD_CHUNKED_CHECKSUM]: TOC } }, { bytes: layer1 }] });
    ref = `${reg.host}/conf/app:v1`;
    const out = new PassThrough().resume();
    expect(await exportCmd([ref, world.dfsRoot], { stdout: out, stderr: out })).toBe(0);
  });
  afterAll(async () => {
    await world?.reg.stop();
    for (const d of [world?.dfsRoot, world?.emptyRoot]) if (d) rmSync(d, { recursive: true, force: true });
  });

  describe.each(SOURCES)('%s', (_name, make) => {
    let source: BlobSource;
    beforeAll(() => {
      source = make(world);
    });
    afterAll(async () => {
      await source?.close?.();
    });

    it('resolves the reference to the verified manifest, its layers, diff_ids and TOC digest', async () => {
      const r = await source.resolve(parseReference(ref));
      expect(r.manifests).toHaveLength(1);
      const m = r.manifests[0]!;
      expect(m.digest).toBe(image.manifest.digest);
      expect(m.configDigest).toBe(image.config.digest);
      expect(m.manifestBytes.equals(image.manifestBytes)).toBe(true);
      expect(m.layers.map((l) => [l.digest, l.size, l.diffId])).toEqual([
        [sha256(layer0), layer0.length, sha256(layer0)],
        [sha256(layer1), layer1.length, sha256(layer1)],
      ]);
      expect(findLayer(r, TOC)).toMatchObject({ keyKind: 'toc', layer: { index: 0 } });
      expect(findLayer(r, sha256(layer1) as Digest)).toMatchObject({ keyKind: 'blob', layer: { index: 1 } });
    });

    it('serves exact byte ranges of a blob: start, middle, end, and the whole of a small one', async () => {
      const blob = await source.openBlob(parseReference(ref), sha256(layer0) as Digest, layer0.length);
      expect(blob.size).toBe(layer0.length);
      for (const [offset, length] of [[0, 100], [123_456, 65_536], [layer0.length - 10, 10]] as const) {
        expect((await blob.read(offset, length)).equals(layer0.subarray(offset, offset + length)), `${offset}+${length}`).toBe(true);
      }
      const small = await source.openBlob(parseReference(ref), sha256(layer1) as Digest, layer1.length);
      expect((await small.read(0, layer1.length)).equals(layer1)).toBe(true);
    });

    it('refuses an unknown reference, an unknown digest and a wrong size with a coded error', async () => {
      await expect(source.resolve(parseReference(`${world.reg.host}/conf/absent:v1`))).rejects.toBeInstanceOf(LazyAlsError);
      const absent = sha256(Buffer.from('not a layer here')) as Digest;
      await expect((async () => (await source.openBlob(parseReference(ref), absent, 10)).read(0, 10))()).rejects.toBeInstanceOf(LazyAlsError);
      await expect(
        (async () => (await source.openBlob(parseReference(ref), sha256(layer1) as Digest, layer1.length + 5)).read(0, layer1.length + 5))(),
      ).rejects.toBeInstanceOf(LazyAlsError);
    });
  });
});
