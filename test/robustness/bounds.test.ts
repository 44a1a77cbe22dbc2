/**
 * Bounds on what one hostile layer may cost (issue 9 rows 2, 3, 4, 10, and the small CI version of
 * the robustness corpus; `npm run bench -- robustness` runs the full-size one). Peak RSS is read
 * from child processes (GNU time, process.resourceUsage) so one test's garbage cannot hide another's.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { BufferBlob } from '../../src/core/blob.js';
import { DigestHasher, type Digest } from '../../src/core/digest.js';
import { DEFAULT_LIMITS } from '../../src/core/limits.js';
import { readVerifiedChunk } from '../../src/formats/chunk-reader.js';
import { openLayer } from '../../src/formats/open-layer.js';
import { TarScanner } from '../../src/formats/tar/tar-scanner.js';
import { hostileCorpus, inspectMeasured, materialize } from '../helpers/hostile.js';
import { sha256 } from '../helpers/writers/estargz.js';
import { padding, tarHeaderBlock, TAR_EOF } from '../helpers/writers/tar.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const MiB = 1024 * 1024;
/** The daemon's memory budget; a CLI inspect of any input must stay inside it too. */
const BUDGET_KIB = 200 * 1024;
const dir = mkdtempSync('/tmp/lazy-als-bounds-');
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const corpus = hostileCorpus(0.02);
const byName = (n: string) => corpus.find((h) => h.name === n)!;

describe('row 2: decompression bombs', () => {
  it.each(['estargz-innerOffset-bomb', 'estargz-zstd-innerOffset-bomb'])('%s: an innerOffset no entry declares is refused when the TOC is read', async (name) => {
    const h = byName(name);
    const blob = new BufferBlob(h.build(), name);
    await expect(openLayer(blob, { expectedTocDigest: h.tocDigest!() as Digest })).rejects.toMatchObject({ code: 'CHUNK_INVALID', message: expect.stringMatching(/innerOffset/) });
  });
});

/** Peak RSS (KiB) of a child that reads one chunk `at` bytes into a zstd/gzip stream of zeros. */
function deepReadRss(kind: 'zstd' | 'gzip', atMiB: number): { rssKiB: number; out: string } {
  const script = `
    import { BufferBlob } from '${ROOT}/dist/core/blob.js';
    import { readVerifiedChunk } from '${ROOT}/dist/formats/chunk-reader.js';
    import { createHash } from 'node:crypto';
    import { gzipSync } from 'node:zlib';
    import { compress } from 'zstd-napi';
    const MiB = 1 << 20;
    const one = '${kind}' === 'gzip' ? gzipSync(Buffer.alloc(MiB)) : compress(Buffer.alloc(MiB));
    const data = Buffer.concat(new Array(${atMiB} + 1).fill(one));
    const digest = 'sha256:' + createHash('sha256').update(Buffer.alloc(MiB)).digest('hex');
    const chunk = { digest, fileOffset: 0, size: MiB, span: { offset: 0, end: data.length, innerOffset: ${atMiB} * MiB } };
    const b = await readVerifiedChunk(new BufferBlob(data, 'deep'), { compression: '${kind}', blobName: 'deep' }, { chunk });
    process.stdout.write(b.length + ' ' + process.resourceUsage().maxRSS);`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { cwd: ROOT, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(r.stderr);
  const [len, rss] = r.stdout.trim().split(' ').map(Number) as [number, number];
  return { rssKiB: rss, out: String(len) };
}

describe('row 3: a chunk deep in a plain gzip/zstd layer is re-read in bounded memory', () => {
  it.each(['zstd', 'gzip'] as const)('%s: reading 1 MiB at 256 MiB keeps only that MiB', (kind) => {
    const r = deepReadRss(kind, 256);
    expect(r.out).toBe(String(MiB));
    // Before: the whole 257 MiB prefix was kept (RSS > 300 MiB).
    expect(r.rssKiB).toBeLessThan(160 * 1024);
  });
});

describe('row 4: PAX records are bounded as they are read', () => {
  it('extension headers before one entry may not add up past maxTarHeaderExtBytes', () => {
    const limits = { ...DEFAULT_LIMITS, maxTarHeaderExtBytes: 64 * 1024 };
    const s = new TarScanner(limits, 'pile');
    const rec = (i: number): Buffer => {
      const body = `user.k${i}=${'a'.repeat(40 * 1024)}\n`;
      let len = body.length + 3;
      while (String(len).length + 1 + body.length !== len) len = String(len).length + 1 + body.length;
      return Buffer.from(`${len} SCHILY.xattr.${body}`.replace(`${len} SCHILY.xattr.`, `${len + 13} SCHILY.xattr.`));
    };
    const header = (r: Buffer): Buffer => Buffer.concat([tarHeaderBlock({ name: 'PaxHeaders/f', typeflag: 'x', mode: 0o644, uid: 0, gid: 0, size: r.length, mtime: 0 }), r, padding(r.length)]);
    s.push(header(rec(0)).subarray(0, 512)); // the first header: 40 KiB, within the limit
    expect(() => {
      s.push(header(rec(0)).subarray(512));
      // The second one is refused from its header block, before its payload is buffered.
      s.push(header(rec(1)).subarray(0, 512));
    }).toThrow(/extension headers of one entry exceed 65536/);
  });

  it('xattr bytes per layer are bounded while scanning', () => {
    const limits = { ...DEFAULT_LIMITS, maxLayerXattrBytes: 100 * 1024 };
    const s = new TarScanner(limits, 'many');
    const parts: Buffer[] = [];
    for (let i = 0; i < 5; i++) {
      const key = `SCHILY.xattr.user.v`;
      const value = 'b'.repeat(30 * 1024);
      const body = ` ${key}=${value}\n`;
      let len = body.length;
      while (String(len).length + body.length !== len) len = String(len).length + body.length;
      const r = Buffer.from(`${len}${body}`);
      parts.push(tarHeaderBlock({ name: `PaxHeaders/f${i}`, typeflag: 'x', mode: 0o644, uid: 0, gid: 0, size: r.length, mtime: 0 }), r, padding(r.length));
      parts.push(tarHeaderBlock({ name: `f${i}`, typeflag: '0', mode: 0o644, uid: 0, gid: 0, size: 0, mtime: 0 }));
    }
    parts.push(TAR_EOF);
    expect(() => s.push(Buffer.concat(parts))).toThrow(/xattrs of the layer exceed 102400/);
  });
});

describe('row 10: hole chunks', () => {
  it('are served as zeros, checked against their digest, without hashing per read', async () => {
    const size = 4 * MiB;
    const chunk = { digest: sha256(Buffer.alloc(size)), fileOffset: 0, size, span: { offset: 0, end: 1, innerOffset: 0 }, zeros: true };
    const info = { compression: 'zstd' as const, blobName: 'holes' };
    const blob = new BufferBlob(Buffer.alloc(1), 'holes');
    const spy = vi.spyOn(DigestHasher, 'for');
    try {
      for (let i = 0; i < 20; i++) expect((await readVerifiedChunk(blob, info, { chunk })).equals(Buffer.alloc(size))).toBe(true);
      // At most one hash of this size, ever (before: one per read).
      expect(spy.mock.calls.length).toBeLessThanOrEqual(1);
    } finally {
      spy.mockRestore();
    }
    const lying = { ...chunk, digest: sha256(Buffer.from('not zeros')) };
    await expect(readVerifiedChunk(blob, info, { chunk: lying })).rejects.toMatchObject({ code: 'CHUNK_DIGEST_MISMATCH' });
  });
});

describe('hostile corpus (small): every input refused or served within the memory budget', () => {
  it.each(corpus.map((h) => [h.name, h] as const))('%s', (name, h) => {
    const file = join(dir, name);
    materialize(h, file);
    const r = inspectMeasured(file, h, 120);
    expect({ outcome: r.code === 0 ? 'served' : 'refused', line: r.line }).toMatchObject({ outcome: h.expect });
    expect(r.rssKiB).toBeLessThan(BUDGET_KIB);
    rmSync(file);
  });
});

describe('row 5: entries per layer', () => {
  it('a TOC with more entries than limits.maxEntries is refused from its bytes, before it is parsed', async () => {
    const h = corpus.find((x) => x.name === 'estargz-1M-entry-toc')!;
    const blob = new BufferBlob(h.build(), 'many');
    const limits = { ...DEFAULT_LIMITS, maxEntries: 5000 };
    await expect(openLayer(blob, { expectedTocDigest: h.tocDigest!() as Digest, limits })).rejects.toMatchObject({ code: 'TOC_TOO_LARGE', message: expect.stringMatching(/before parsing/) });
  });

  it('a tar with more entries is refused while it streams', async () => {
    const h = corpus.find((x) => x.name === 'tar-1M-entries')!;
    const limits = { ...DEFAULT_LIMITS, maxEntries: 5000 };
    await expect(openLayer(new BufferBlob(h.build(), 'many'), { limits })).rejects.toMatchObject({ code: 'TOC_TOO_LARGE' });
  });

  it('the default bound keeps an index of the largest accepted layer inside the memory budget', () => {
    // ~0.55 KiB per entry once built, a few KiB while building: 100k entries stay well under 200 MiB.
    expect(DEFAULT_LIMITS.maxEntries).toBeLessThanOrEqual(100_000);
  });
});

describe('limits are configuration', () => {
  it('[limits] keys set the bounds the catalog uses; a broken value is a clear error', async () => {
    const { applyRaw, DEFAULTS } = await import('../../src/daemon/config.js');
    const c = applyRaw(DEFAULTS, { limits: { max_entries: 5000, max_toc_bytes: '8MiB', max_layer_xattr_bytes: '1MiB' } }, 'test.toml');
    expect(c.limits).toMatchObject({ maxEntries: 5000, maxTocBytes: 8 * MiB, maxLayerXattrBytes: MiB, maxChunkBytes: DEFAULT_LIMITS.maxChunkBytes });
    expect(() => applyRaw(DEFAULTS, { limits: { max_entries: 0 } }, 'test.toml')).toThrow(/limits\.max_entries: expected an integer ≥ 1/);
    expect(() => applyRaw(DEFAULTS, { limits: { max_entrys: 1 } }, 'test.toml')).toThrow(/unknown setting/);
    expect(DEFAULTS.limits).toEqual(DEFAULT_LIMITS);
  });
});

describe('bounds are configurable from the command line', () => {
  it('each --max-* flag of serve sets its bound (the defaults object is never written to)', async () => {
    const { configFromArgs } = await import('../../src/cli/commands/serve.js');
    const c = await configFromArgs(['--config', '/dev/null', '--max-entries', '5', '--max-index-heap-bytes', '64MiB', '--max-toc-bytes', '1MiB', '/tmp/x']);
    if (c === 'help') throw new Error('help');
    expect(c.limits).toMatchObject({ maxEntries: 5, maxIndexHeapBytes: 64 * 1024 * 1024, maxTocBytes: 1024 * 1024 });
    expect(DEFAULT_LIMITS.maxEntries).toBe(100_000);
    // without a config file (the embedded defaults, a frozen object) as well
    const d = await configFromArgs(['--max-index-heap-bytes', '32MiB', '/tmp/x']);
    if (d === 'help') throw new Error('help');
    expect(d.limits.maxIndexHeapBytes).toBe(32 * 1024 * 1024);
  });
});
