import { afterAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { decompress as zstdDecompress } from 'zstd-napi';
import { buildEStargz, estargzFooter, legacyFooter, sampleEntries, sha256 } from '../helpers/writers/estargz.js';

// The fixture writer is checked against independent tools (GNU tar, gzip, zstd CLIs) and the byte
// layouts spelled out in formats.md, so reader tests do not merely agree with a writer sharing their bugs.
const dir = mkdtempSync(join(tmpdir(), 'estargz-writer-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function tarList(file: string, decompressor: string): { out: string; err: string } {
  // Shell pipeline of the real tools; stderr captured (zstd variant: tar warns about the missing EOF).
  const script = `${decompressor} -dc "$1" | tar -tv --numeric-owner 2>"$2"`;
  const out = execFileSync('sh', ['-c', script, 'sh', file, file + '.err'], { encoding: 'utf8' });
  const err = execFileSync('cat', [file + '.err'], { encoding: 'utf8' });
  return { out, err };
}

const names = (listing: string): string[] =>
  listing
    .trim()
    .split('\n')
    .map((l) => l.replace(/^\S+\s+\S+\s+\d+(,\s*\d+)?\s+\S+\s+\S+\s+/, '').replace(/ (->|link to) .*$/, ''));

describe('eStargz fixture writer', () => {
  const expected = [
    '.no.prefetch.landmark', './', './etc/', './etc/passwd', './etc/setuid', './etc/empty', './etc/xattr', './etc/link', './etc/hard',
    './dev/', './dev/null', './dev/sda', './dev/fifo', './gone/', './gone/.wh.old', './opq/', './opq/.wh..wh..opq', './opq/keep',
    './uni/файл <&>.txt', './implied/deep/file',
  ];

  for (const [label, opts] of [['gzip', {}], ['legacy', { legacy: true }], ['innerOffset', { minChunkSize: 65536, chunkSize: 8192 }]] as const) {
    it(`${label}: gunzip | tar -t lists every file plus stargz.index.json; content and diffID match`, () => {
      const fx = buildEStargz(sampleEntries(), opts);
      const f = join(dir, `${label}.tgz`);
      writeFileSync(f, fx.blob);
      const { out, err } = tarList(f, 'gzip');
      expect(err).toBe('');
      expect(names(out)).toEqual([...expected, 'stargz.index.json']);
      const all = gunzipSync(fx.blob);
      expect(sha256(all)).toBe(fx.diffId);
      expect(all.length).toBe(fx.uncompressedSize);
      const json = execFileSync('sh', ['-c', 'gzip -dc "$1" | tar -xOf - stargz.index.json', 'sh', f]);
      expect(Buffer.compare(json, fx.tocJson)).toBe(0);
      expect(sha256(json)).toBe(fx.tocDigest);
      const passwd = execFileSync('sh', ['-c', 'gzip -dc "$1" | tar -xOf - ./etc/passwd', 'sh', f], { encoding: 'utf8' });
      expect(passwd).toBe('root:x:0:0:root:/root:/bin/sh\n');
    });
  }

  it('zstd: zstd -dc | tar -t lists every file (no TOC entry, no EOF blocks: tar warns)', () => {
    const fx = buildEStargz(sampleEntries(), { compression: 'zstd' });
    const f = join(dir, 'z.tzst');
    writeFileSync(f, fx.blob);
    const { out } = tarList(f, 'zstd');
    expect(names(out)).toEqual(expected);
    const all = zstdDecompress(fx.blob);
    expect(all.length % 512).toBe(0);
    expect(all.subarray(all.length - 1024).equals(Buffer.alloc(1024))).toBe(false);
    expect(sha256(all)).toBe(fx.diffId);
    // Footer frame and TOC frame layout (formats.md §3.1-3.2).
    const tail = fx.blob.subarray(fx.blob.length - 48);
    expect(tail.subarray(0, 8).toString('hex')).toBe('502a4d1828000000');
    expect(tail.subarray(40).toString('latin1')).toBe('GnUlInUx');
    expect(Number(tail.readBigUInt64LE(8))).toBe(fx.tocOffset);
    expect(fx.blob.readUInt32LE(fx.tocOffset - 8)).toBe(0x184d2a50);
    expect(zstdDecompress(fx.blob.subarray(fx.tocOffset, fx.tocOffset + Number(tail.readBigUInt64LE(16)))).equals(fx.tocJson)).toBe(true);
  });

  it('footers are byte-exact per formats.md §2.2/§2.3 and TOC JSON is tab-indented with Go HTML escaping', () => {
    expect(estargzFooter(0x1234).toString('hex')).toBe(
      '1f8b08040000000000ff1a00534716003030303030303030303030303132333453544152475a010000ffff0000000000000000',
    );
    expect(legacyFooter(0x1234)).toHaveLength(47);
    expect(legacyFooter(0x1234).subarray(10, 12).toString('hex')).toBe('1600');
    const fx = buildEStargz(sampleEntries());
    expect(fx.blob.subarray(fx.blob.length - 51).equals(estargzFooter(fx.tocOffset))).toBe(true);
    const s = fx.tocJson.toString();
    expect(s.startsWith('{\n\t"version": 1,\n\t"entries": [\n\t\t{\n\t\t\t"name": ".no.prefetch.landmark",')).toBe(true);
    expect(s).toContain('\\u003c\\u0026\\u003e');
    expect(s.endsWith('}')).toBe(true);
    const leg = buildEStargz(sampleEntries(), { legacy: true });
    // Legacy TOC member carries FEXTRA "stargz.toc".
    expect(leg.blob.subarray(leg.tocOffset, leg.tocOffset + 22).toString('hex')).toBe('1f8b080400000000' + '02ff0a00' + Buffer.from('stargz.toc').toString('hex'));
  });
});
