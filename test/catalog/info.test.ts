import { describe, expect, it } from 'vitest';
import { sha256Of } from '../../src/core/digest.js';
import { IndexError } from '../../src/catalog/errors.js';
import { buildInfo } from '../../src/catalog/info.js';

const key = sha256Of(Buffer.from('toc'));
const blob = sha256Of(Buffer.from('blob'));
const diffId = sha256Of(Buffer.from('diff'));
const lazy = { compression: 'gzip', uids: [0, 33], gids: [0, 44] } as const;

describe('info', () => {
  it('Era B: toc-digest = key, expected-layer-diffid flag, diff-size -1, nothing unverified', () => {
    const s = buildInfo({ key, keyKind: 'toc', index: lazy, blobDigest: blob, blobSize: 1234, diffId }).toString();
    expect(s).toBe(
      `{"toc-digest":"${key}","compressed-size":1234,"diff-size":-1,"compression":2,"uidset":[0,33],"gidset":[0,44],"flags":{"expected-layer-diffid":"${diffId}"}}\n`,
    );
    const j = JSON.parse(s) as Record<string, unknown>;
    for (const k of ['diff-digest', 'compressed-diff-digest', 'names', 'uidmap', 'gidmap', 'big-data-names']) expect(j).not.toHaveProperty(k);
    const z = JSON.parse(buildInfo({ key, keyKind: 'toc', index: { ...lazy, compression: 'zstd' }, blobDigest: blob, blobSize: 1, diffId }).toString());
    expect(z.compression).toBe(4);
  });

  it('Era A: compressed-diff-digest, diff-digest from the config, best diff-size', () => {
    const s = buildInfo({
      key: blob, keyKind: 'blob', index: lazy, blobDigest: blob, blobSize: 99, diffId,
      annotations: { 'io.containers.estargz.uncompressed-size': '4096' },
    }).toString();
    expect(s).toBe(
      `{"compressed-diff-digest":"${blob}","compressed-size":99,"diff-digest":"${diffId}","diff-size":4096,"compression":2,"uidset":[0,33],"gidset":[0,44]}\n`,
    );
    // Verified plain layer: verified diffID and exact size win.
    const verified = sha256Of(Buffer.from('verified'));
    const p = JSON.parse(buildInfo({
      key: blob, keyKind: 'blob', index: { compression: 'none', uids: [0], gids: [0], diffId: verified, uncompressedSize: 10240 },
      blobDigest: blob, blobSize: 10240, diffId: verified,
    }).toString());
    expect(p).toMatchObject({ 'diff-digest': verified, 'diff-size': 10240, compression: 0 });
    // Unknown size: -1.
    expect(JSON.parse(buildInfo({ key: blob, keyKind: 'blob', index: lazy, blobDigest: blob, blobSize: 1, diffId }).toString())['diff-size']).toBe(-1);
  });

  it('no config diffID: not servable in either era', () => {
    for (const keyKind of ['blob', 'toc'] as const) {
      const e = (() => {
        try {
          buildInfo({ key, keyKind, index: lazy, blobDigest: blob, blobSize: 1 });
        } catch (err) {
          return err;
        }
      })();
      expect(e).toBeInstanceOf(IndexError);
      expect((e as IndexError).code).toBe('LAYER_NOT_SERVABLE');
    }
  });
});
