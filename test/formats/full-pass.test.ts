/**
 * The full-read check (formats/full-pass.ts): a lazily served layer read whole must be the tar a
 * full pull unpacks. Blobs from the project's writers, in every TOC format; authentic-but-lying
 * TOCs (the TOC digest is recomputed after the edit, so only the comparison with the tar can tell).
 */
import { describe, expect, it } from 'vitest';
import { BufferBlob } from '../../src/core/blob.js';
import { sha256Of, type Digest } from '../../src/core/digest.js';
import { openEStargz, openEStargzZstd } from '../../src/formats/estargz/index.js';
import { verifyFullPass } from '../../src/formats/full-pass.js';
import type { LayerIndex } from '../../src/formats/model.js';
import { openZstdChunked } from '../../src/formats/zstd-chunked/index.js';
import { buildEStargz, sampleEntries, type EStargzWriterOptions, type TocJsonEntry } from '../helpers/writers/estargz.js';
import { buildZstdChunked, zstdChunkedSampleEntries } from '../helpers/writers/zstd-chunked.js';

type Opened = { index: LayerIndex; blob: BufferBlob; diffId: Digest };

async function estargz(opts: EStargzWriterOptions = {}): Promise<Opened> {
  const fx = buildEStargz(sampleEntries(), opts);
  const blob = new BufferBlob(fx.blob, 'esgz');
  const open = opts.compression === 'zstd' ? openEStargzZstd : openEStargz;
  const { index } = await open(blob, { expectedTocDigest: fx.tocDigest, descriptor: { digest: sha256Of(fx.blob), size: fx.blob.length } });
  return { index, blob, diffId: fx.diffId };
}

describe('full pass over a lazily served layer', () => {
  const kinds: [string, () => Promise<Opened>][] = [
    ['eStargz', () => estargz({ chunkSize: 4096 })],
    ['eStargz innerOffset', () => estargz({ chunkSize: 4096, minChunkSize: 20000 })],
    ['legacy stargz', () => estargz({ legacy: true })],
    ['estargz-zstd', () => estargz({ compression: 'zstd', chunkSize: 4096 })],
    ['zstd:chunked', async () => {
      const w = buildZstdChunked(zstdChunkedSampleEntries(), { chunkSize: 20_000, holes: true });
      const blob = new BufferBlob(w.blob, 'zc');
      const { index } = await openZstdChunked(blob, { descriptor: { annotations: w.annotations } });
      return { index, blob, diffId: w.diffId as Digest };
    }],
  ];
  for (const [name, make] of kinds) {
    it(`${name}: an honest layer passes and its diff_id is checked`, async () => {
      const { index, blob, diffId } = await make();
      const r = await verifyFullPass(blob, index, { diffId });
      expect(r.diffId).toBe(diffId);
      await expect(verifyFullPass(blob, index, { diffId: sha256Of(Buffer.from('other')) })).rejects.toMatchObject({ code: 'DIFFID_MISMATCH' });
    });
  }

  const lies: [string, (es: TocJsonEntry[]) => void][] = [
    ['mode', (es) => (es.find((e) => e['name'] === './etc/passwd')!['mode'] = 0o4755)],
    ['uid', (es) => (es.find((e) => e['name'] === './etc/passwd')!['uid'] = 0)],
    ['mtime', (es) => (es.find((e) => e['name'] === './etc/link')!['modtime'] = '2030-01-01T00:00:00Z')],
    ['symlink target', (es) => (es.find((e) => e['name'] === './etc/link')!['linkName'] = '/etc/shadow')],
    ['xattr', (es) => (es.find((e) => e['name'] === './etc/xattr')!['xattrs'] = { 'user.note': Buffer.from('bye').toString('base64') })],
    ['name', (es) => es.filter((e) => e['name'] === './etc/setuid').forEach((e) => (e['name'] = './etc/setgid'))],
    // The tar whites `gone/old` out; a TOC naming a plain file there would un-hide the lower layer's.
    ['whiteout (served as a regular file)', (es) => (es.find((e) => e['name'] === './gone/.wh.old')!['name'] = './gone/old')],
    ['content (a file pointed at another file\'s chunk)', (es) => {
      const a = es.find((e) => e['name'] === './etc/passwd')!;
      const b = es.find((e) => e['name'] === './etc/setuid')!;
      for (const k of ['offset', 'chunkDigest', 'digest', 'size', 'chunkSize']) a[k] = b[k];
      es.splice(es.indexOf(b), 1); // the other file is hidden, so the TOC passes its own checks
    }],
  ];
  for (const [what, edit] of lies) {
    it(`eStargz: a TOC that lies about the ${what} is opened lazily but fails the full pass (FORMAT_CONFLICT)`, async () => {
      const { index, blob, diffId } = await estargz({ chunkSize: 4096, editToc: (toc) => edit(toc.entries) });
      await expect(verifyFullPass(blob, index, { diffId })).rejects.toMatchObject({ code: 'FORMAT_CONFLICT' });
    });
  }
});
