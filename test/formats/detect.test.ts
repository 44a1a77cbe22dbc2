import { describe, expect, it } from 'vitest';
import { gzipSync } from 'node:zlib';
import { compress as zstdCompress } from 'zstd-napi';
import { BufferBlob } from '../../src/core/blob.js';
import { sha256Of } from '../../src/core/digest.js';
import { detectFormat, compressionOfMediaType } from '../../src/formats/detect.js';
import { FormatError } from '../../src/formats/errors.js';
import type { LayerDescriptor } from '../../src/formats/layer-reader.js';
import { openLayer, loadLayerRecord, resolveLayerFormat } from '../../src/formats/open-layer.js';
import { buildEStargz, estargzFooter, legacyFooter, sampleEntries, skippableFrame, zstdFooterFrame } from '../helpers/writers/estargz.js';
import { buildZstdChunked, zstdChunkedSampleEntries } from '../helpers/writers/zstd-chunked.js';
import { buildTar } from '../helpers/writers/tar.js';
import { asByteString } from '../../src/formats/byte-string.js';

const STARGZ = 'containerd.io/snapshot/stargz/toc.digest';
const ZCHUNKED = 'io.github.containers.zstd-chunked.manifest-checksum';
const D = sha256Of(Buffer.from('toc'));
const OCI = 'application/vnd.oci.image.layer.v1';

const tar = buildTar([{ name: 'a', type: 'reg', data: Buffer.from('hello') }]);
const gz = gzipSync(tar);
const zst = Buffer.from(zstdCompress(tar));
const estargz = Buffer.concat([gz, estargzFooter(1234)]);
const legacy = Buffer.concat([gz, legacyFooter(1234)]);
const external = Buffer.concat([gz, Buffer.from('1f8b08040000000000ff15005347110053544152475a45585445524e414c544f43010000ffff0000000000000000', 'hex')]);
const estargzZstd = Buffer.concat([zst, zstdFooterFrame(10, 20, 30)]);
function zchunkedFooter(): Buffer {
  const f = Buffer.alloc(64);
  f.writeBigUInt64LE(1n, 24);
  f.write('GNUlInUx', 56, 'latin1');
  return skippableFrame(f);
}
const zstdChunked = Buffer.concat([zst, zchunkedFooter()]);

function det(blob: Buffer, desc?: LayerDescriptor): string {
  try {
    const r = detectFormat(blob.subarray(Math.max(0, blob.length - 72)), blob.subarray(0, 8), desc);
    return `${r.format}/${r.compression}`;
  } catch (e) {
    expect(e).toBeInstanceOf(FormatError);
    return (e as FormatError).code;
  }
}

describe('detectFormat', () => {
  it('recognises every footer and magic', () => {
    expect(det(tar)).toBe('tar/none');
    expect(det(Buffer.alloc(0))).toBe('tar/none');
    expect(det(gz)).toBe('tar+gzip/gzip');
    expect(det(zst)).toBe('tar+zstd/zstd');
    expect(det(Buffer.concat([skippableFrame(Buffer.from('meta')), zst]))).toBe('tar+zstd/zstd');
    expect(det(estargz)).toBe('estargz/gzip');
    expect(det(legacy)).toBe('stargz-legacy/gzip');
    expect(det(estargzZstd)).toBe('estargz-zstd/zstd');
    expect(det(zstdChunked)).toBe('zstd-chunked/zstd');
    expect(det(external)).toBe('tar+gzip/gzip'); // valid tar.gz; external TOCs are not supported lazily
  });

  it('media types: suffixes, and conflicts with the bytes', () => {
    expect(compressionOfMediaType(`${OCI}.tar`)).toBe('none');
    expect(compressionOfMediaType('application/vnd.docker.image.rootfs.diff.tar.gzip')).toBe('gzip');
    expect(compressionOfMediaType(`${OCI}.tar+zstd`)).toBe('zstd');
    expect(compressionOfMediaType('application/vnd.oci.image.layer.nondistributable.v1.tar+gzip')).toBe('gzip');
    expect(det(gz, { mediaType: 'application/octet-stream' })).toBe('FORMAT_UNKNOWN');
    expect(det(gz, { mediaType: `${OCI}.tar+gzip+encrypted` })).toBe('FORMAT_UNKNOWN');
    expect(det(zst, { mediaType: `${OCI}.tar+gzip` })).toBe('FORMAT_CONFLICT');
    expect(det(gz, { mediaType: `${OCI}.tar` })).toBe('FORMAT_CONFLICT');
    expect(det(tar, { mediaType: `${OCI}.tar+zstd` })).toBe('FORMAT_CONFLICT');
    expect(det(estargz, { mediaType: 'application/vnd.docker.image.rootfs.diff.tar.gzip' })).toBe('estargz/gzip');
  });

  it('annotations must agree with the bytes', () => {
    expect(det(estargz, { annotations: { [STARGZ]: D } })).toBe('estargz/gzip');
    expect(det(estargzZstd, { annotations: { [STARGZ]: D } })).toBe('estargz-zstd/zstd');
    expect(det(zstdChunked, { annotations: { [ZCHUNKED]: D } })).toBe('zstd-chunked/zstd');
    // Pre-2023 zstd:chunked wrote the 40-byte "GnUlInUx" footer; the annotation decides.
    expect(det(estargzZstd, { annotations: { [ZCHUNKED]: D } })).toBe('zstd-chunked/zstd');
    expect(det(estargz, { annotations: { [STARGZ]: D, [ZCHUNKED]: D } })).toBe('FORMAT_CONFLICT');
    expect(det(gz, { annotations: { [STARGZ]: D } })).toBe('FORMAT_CONFLICT');
    expect(det(zstdChunked, { annotations: { [STARGZ]: D } })).toBe('FORMAT_CONFLICT');
    expect(det(zst, { annotations: { [ZCHUNKED]: D } })).toBe('FORMAT_CONFLICT');
    expect(det(estargz, { annotations: { [ZCHUNKED]: D } })).toBe('FORMAT_CONFLICT');
    expect(det(external, { annotations: { [STARGZ]: D } })).toBe('FORMAT_UNKNOWN');
    // Footer bytes with the wrong compression at the head.
    expect(det(Buffer.concat([tar, estargzFooter(5)]))).toBe('FORMAT_CONFLICT');
    expect(det(Buffer.concat([gz, zchunkedFooter()]))).toBe('FORMAT_CONFLICT');
  });
});

describe('openLayer / loadLayerRecord dispatch', () => {
  it('plain, eStargz (pinned and unpinned fallback) and zstd:chunked', async () => {
    const plain = await openLayer(new BufferBlob(gz), { descriptor: { mediaType: `${OCI}.tar+gzip` } });
    expect(plain.index.format).toBe('tar+gzip');
    expect(loadLayerRecord(plain.record).lookup(asByteString('a'))?.size).toBe(5);

    const fx = buildEStargz(sampleEntries());
    const lazy = await openLayer(new BufferBlob(fx.blob), { descriptor: { annotations: { [STARGZ]: fx.tocDigest } } });
    expect(lazy.index.format).toBe('estargz');
    expect(lazy.index.tocDigest).toBe(fx.tocDigest);
    expect(loadLayerRecord(lazy.record).lookup(asByteString('etc/passwd'))?.type).toBe('reg');
    // No pin, no permission to go unpinned: read as the plain tar.gz it also is (full verification).
    const full = await openLayer(new BufferBlob(fx.blob), { diffId: fx.diffId });
    expect(full.index.format).toBe('tar+gzip');
    expect(full.index.diffId).toBe(fx.diffId);
    expect(full.index.lookup(asByteString('stargz.index.json'))?.type).toBe('reg'); // what a full pull extracts
    expect(await resolveLayerFormat(new BufferBlob(fx.blob), { allowUnpinnedToc: true })).toBe('estargz');
    await expect(openLayer(new BufferBlob(gz), { expectedTocDigest: fx.tocDigest })).rejects.toMatchObject({ code: 'FORMAT_CONFLICT' });

    const zc = buildZstdChunked(zstdChunkedSampleEntries());
    const z = await openLayer(new BufferBlob(zc.blob), { descriptor: { mediaType: `${OCI}.tar+zstd`, annotations: zc.annotations } });
    expect(z.index.format).toBe('zstd-chunked');
    expect(loadLayerRecord(z.record).nodeCount).toBe(z.index.nodeCount);
  });
});
