import { readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { sha256Of, type Digest } from '../../src/core/digest.js';
import { createLogger } from '../../src/core/log.js';
import { MetadataStore, type StoredLayer } from '../../src/cache/metadata-store.js';
import type { LayerRecord } from '../../src/formats/layer-reader.js';
import { parseReference } from '../../src/sources/reference.js';
import { LayoutSource } from '../catalog/support/layout-source.js';
import { tempDir } from './support/tmp.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

async function setup(): Promise<{ dir: string; src: LayoutSource; tocDigest: Digest; diffId: Digest }> {
  const dir = await tempDir();
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  const src = await LayoutSource.create(join(dir, 'layout'));
  const tocDigest = sha256Of(Buffer.from('toc'));
  const diffId = sha256Of(Buffer.from('tar'));
  await src.addImage('localhost:5000/app:1', [
    { blob: Buffer.from('layer-0'), diffId: sha256Of(Buffer.from('d0')) },
    { blob: Buffer.from('layer-1'), diffId, annotations: { 'containerd.io/snapshot/stargz/toc.digest': tocDigest, other: 'x' } },
  ]);
  return { dir, src, tocDigest, diffId };
}

describe('MetadataStore', () => {
  it('round-trips a resolved image, re-verified, and rejects tampering', async () => {
    const { dir, src, tocDigest, diffId } = await setup();
    const ref = parseReference('localhost:5000/app:1');
    const image = await src.resolve(ref);
    const lines: string[] = [];
    const m = await MetadataStore.open({ stateDir: join(dir, 'state'), logger: createLogger('warn', { write: (l: string) => lines.push(l) }) });
    await m.saveImage(image);
    const again = await (await MetadataStore.open({ stateDir: join(dir, 'state') })).loadImage(ref);
    expect(again?.digest).toBe(image.digest);
    expect(again?.manifests[0]!.layers[1]).toMatchObject({ tocDigest, diffId, size: 7 });
    expect(again?.manifests[0]!.manifestBytes).toEqual(image.manifests[0]!.manifestBytes);
    expect(await m.loadImage(parseReference('localhost:5000/app:2'))).toBeUndefined();

    // A ref file claiming a different TOC digest than the (verified) manifest says: rejected.
    const refDir = join(dir, 'state', 'metadata', 'refs');
    const [file] = await readdir(refDir);
    const text = (await readFile(join(refDir, file!), 'utf8')).replace(tocDigest, sha256Of(Buffer.from('evil')));
    await writeFile(join(refDir, file!), text);
    expect(await m.loadImage(ref)).toBeUndefined();
    // …with one warn line carrying the typed code, naming the file.
    const warn = JSON.parse(lines.at(-1)!) as { event: string; file: string; error: { code: string; message: string } };
    expect(warn.event).toBe('metadata.ref_invalid');
    expect(warn.file).toContain(file!);
    expect(warn.error).toMatchObject({ name: 'CacheError', code: 'METADATA_INVALID', message: expect.stringMatching(/^layer 1 /) });

    // Corrupt manifest object: rejected.
    await m.saveImage(image);
    expect(await m.loadImage(ref)).toBeDefined();
    await writeFile(m.objects.pathOf(image.manifests[0]!.digest), '{}');
    expect(await m.loadImage(ref)).toBeUndefined();
  });

  it('stores layer records by key, merges refs, detects a corrupt record', async () => {
    const { dir, tocDigest, diffId } = await setup();
    const m = await MetadataStore.open({ stateDir: join(dir, 'state') });
    const layer: StoredLayer = {
      key: tocDigest,
      keyKind: 'toc',
      blobDigest: sha256Of(Buffer.from('layer-1')),
      blobSize: 7,
      mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
      annotations: { a: 'b' },
      tocDigest,
      diffId,
      refs: ['localhost:5000/app:1'],
    };
    const record: LayerRecord = { version: 1, format: 'estargz', blobSize: 7, tocDigest, params: { tocOffset: 1 }, payload: 'e30=' };
    await m.saveLayer(layer, record);
    await m.addLayerRef(tocDigest, 'localhost:5000/app:2');
    const m2 = await MetadataStore.open({ stateDir: join(dir, 'state') });
    const got = await m2.loadLayer(tocDigest);
    expect(got?.record).toEqual(record);
    expect(got?.layer.refs).toEqual(['localhost:5000/app:1', 'localhost:5000/app:2']);
    expect(await m2.listLayerKeys()).toEqual([tocDigest]);
    const entry = await m2.loadLayerEntry(tocDigest);
    await writeFile(m2.objects.pathOf(entry!.recordDigest), '{"version":1,"payload":"forged"}');
    expect(await m2.loadLayer(tocDigest)).toBeUndefined();
  });
});
