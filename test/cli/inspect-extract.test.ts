import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sha256Of } from '../../src/core/digest.js';
import { compressFile, gnuTar, isRoot, makeFixtureTree } from '../helpers/gnu-tar-fixture.js';
import { compareTrees, convertWhiteouts, snapshotTree } from '../helpers/tree-compare.js';
import { buildEStargz, sampleEntries } from '../helpers/writers/estargz.js';

const repo = join(import.meta.dirname, '../..');
const bin = join(repo, 'bin/lazy-als.js');
const work = mkdtempSync(join(tmpdir(), 'cli-ie-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

function cli(...args: string[]): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', maxBuffer: 1 << 28 });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** GNU tar's extraction of the same blob, converted to overlay form: the reference tree. */
function gnuExtract(blob: string, dest: string): void {
  mkdirSync(dest);
  execFileSync('tar', ['-x', '--xattrs', '--xattrs-include=*', '--numeric-owner', '-C', dest, '-f', blob]);
  convertWhiteouts(dest);
}

const ESTARGZ_ARTEFACTS = new Set(['stargz.index.json', '.prefetch.landmark', '.no.prefetch.landmark']);

beforeAll(() => {
  execFileSync('npm', ['run', 'build'], { cwd: repo, stdio: 'ignore' });
}, 120_000);

describe('lazy-als CLI basics', () => {
  it('usage, unknown command, bad option', () => {
    expect(cli('--help')).toMatchObject({ code: 0 });
    expect(cli('--help').stdout).toContain('lazy-als inspect');
    const u = cli('frobnicate');
    expect(u.code).toBe(2);
    expect(u.stderr).toContain('unknown command');
    expect(cli('inspect', '--no-such-flag', 'x').code).toBe(2);
    expect(cli('inspect', '--toc-digest', 'nope', 'x').code).toBe(2);
    const missing = cli('inspect', join(work, 'does-not-exist'));
    expect(missing.code).toBe(1);
    expect(missing.stderr.trim().split('\n')).toHaveLength(1);
  });
});

describe.skipIf(!isRoot)('inspect and extract against GNU tar', () => {
  const src = join(work, 'src');
  const blobs: Record<string, string> = {};
  beforeAll(() => {
    makeFixtureTree(src);
    blobs['tar'] = join(work, 'layer.tar');
    gnuTar(src, blobs['tar'], 'pax');
    blobs['tar+gzip'] = compressFile(blobs['tar'], 'gzip');
    blobs['tar+zstd'] = compressFile(blobs['tar'], 'zstd');
  });

  for (const kind of ['tar', 'tar+gzip', 'tar+zstd'] as const) {
    it(`${kind}: inspect --json lists the verified view`, () => {
      const diffId = sha256Of(readFileSync(blobs['tar']!));
      const r = cli('inspect', '--json', '--diff-id', diffId, blobs[kind]!);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
      expect(lines[0]!['layer']).toMatchObject({ format: kind, diffId, diffIdVerified: true, blobDigest: sha256Of(readFileSync(blobs[kind]!)) });
      const byPath = new Map(lines.slice(1).map((l) => [l['path'] as string, l]));
      expect(byPath.get('dir/file.txt')).toMatchObject({ type: 'reg', mode: '0640', size: 13, xattrs: { 'user.test': Buffer.from('value-1').toString('base64') } });
      expect(byPath.get('setuid')).toMatchObject({ mode: '04755' });
      expect(byPath.get('chardev')).toMatchObject({ type: 'char', rdev: { major: 1, minor: 3 } });
      expect(byPath.get('dir/gone')).toMatchObject({ type: 'char', mode: '0000', rdev: { major: 0, minor: 0 } });
      expect(byPath.get('dir/sym')).toMatchObject({ type: 'symlink', linkTarget: 'file.txt' });
      expect(byPath.get('dir/hard')!['ino']).toBe(byPath.get('dir/file.txt')!['ino']);
      expect(byPath.has('opq/.wh..wh..opq')).toBe(false);
      // Human form too.
      const h = cli('inspect', blobs[kind]!);
      expect(h.code).toBe(0);
      expect(h.stdout).toMatch(/^format: +tar/m);
      expect(h.stdout).toMatch(/^-rwsr-xr-x .* setuid$/m);
    });

    it(`${kind}: extract equals GNU tar -x with whiteouts converted`, () => {
      const out = join(work, `out-${kind}`);
      const ref = join(work, `ref-${kind}`);
      const r = cli('extract', blobs[kind]!, out);
      expect(r.code, r.stderr).toBe(0);
      gnuExtract(blobs['tar']!, ref);
      const diffs = compareTrees(snapshotTree(ref), snapshotTree(out), ['gnu-tar', 'lazy-als']);
      expect(diffs).toEqual([]);
      // The comparison is not vacuous.
      const snap = snapshotTree(out);
      expect(snap.get('opq')!.xattrs['trusted.overlay.opaque']).toBe(Buffer.from('y').toString('base64'));
      expect(snap.get('dir/big.bin')!.sha256).toBe(sha256Of(readFileSync(join(src, 'dir/big.bin'))).slice(7));
      expect(snap.get('bigid')).toMatchObject({ uid: 3_000_000, gid: 3_000_001 });
      if (existsSync(join(src, 'cap'))) expect(snap.get('cap')!.xattrs['security.capability']).toBeDefined();
      expect(readdirSync(work).filter((n) => n.includes('lazy-als-'))).toEqual([]); // work dir removed
    });
  }

  it('a corrupted blob: exit 1, one line on stderr, DIR not created, no leftovers', () => {
    const bytes = Buffer.from(readFileSync(blobs['tar+gzip']!));
    for (let i = 0; i < 64; i++) bytes[Math.floor(bytes.length / 2) + i]! ^= 0xa5;
    const bad = join(work, 'corrupt.tar.gz');
    writeFileSync(bad, bytes);
    const out = join(work, 'out-corrupt');
    const r = cli('extract', bad, out);
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/DECOMPRESS_FAILED|TAR_INVALID/);
    expect(existsSync(out)).toBe(false);
    expect(readdirSync(work).filter((n) => n.includes('lazy-als-'))).toEqual([]);
    const i = cli('inspect', bad);
    expect(i.code).toBe(1);
    expect(i.stderr.trim().split('\n')).toHaveLength(1);
    expect(i.stdout).toBe('');
  });

  it('a wrong --diff-id: exit 1 with DIFFID_MISMATCH, DIR not created', () => {
    const out = join(work, 'out-diffid');
    const r = cli('extract', '--diff-id', sha256Of(Buffer.from('x')), blobs['tar+zstd']!, out);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('DIFFID_MISMATCH');
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(existsSync(out)).toBe(false);
  });

  it('media type contradicting the bytes: FORMAT_CONFLICT', () => {
    const r = cli('inspect', '--media-type', 'application/vnd.oci.image.layer.v1.tar+gzip', blobs['tar+zstd']!);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('FORMAT_CONFLICT');
  });

  it('refuses a non-empty DIR and leaves it alone', () => {
    const out = join(work, 'occupied');
    mkdirSync(out);
    writeFileSync(join(out, 'mine'), 'keep');
    const r = cli('extract', blobs['tar']!, out);
    expect(r.code).toBe(1);
    expect(readFileSync(join(out, 'mine'), 'utf8')).toBe('keep');
  });
});

describe.skipIf(!isRoot)('inspect and extract of an eStargz layer (TOC format)', () => {
  // The sample's security.capability value is not a valid capability blob; the kernel would refuse it.
  const entries = sampleEntries().map((e) => (e.xattrs ? { ...e, xattrs: { 'user.note': 'hello' } } : e));
  // No prioritized files: GNU tar (the reference) sets a directory's mtime wrongly when the
  // directory's own entry follows its children, which prioritisation causes.
  const fx = buildEStargz(entries, { chunkSize: 4096 });
  const blob = join(work, 'layer.estargz');
  beforeAll(() => writeFileSync(blob, fx.blob));

  it('inspect verifies every chunk; pinned vs unpinned TOC', () => {
    const pinned = cli('inspect', '--json', '--toc-digest', fx.tocDigest, '--diff-id', fx.diffId, blob);
    expect(pinned.code, pinned.stderr).toBe(0);
    expect(pinned.stderr).toBe('');
    const head = JSON.parse(pinned.stdout.split('\n')[0]!)['layer'];
    expect(head).toMatchObject({ format: 'estargz', tocDigest: fx.tocDigest, tocPinned: true, diffId: fx.diffId, diffIdVerified: true, tarVerified: true }); // the full pass checks the tar against the diffID
    expect(head.verifiedChunks).toBeGreaterThan(5);
    const unpinned = cli('inspect', blob);
    expect(unpinned.code).toBe(0);
    expect(unpinned.stderr).toMatch(/not pinned/);
    const wrong = cli('inspect', '--toc-digest', sha256Of(Buffer.from('nope')), blob);
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toContain('TOC_DIGEST_MISMATCH');
  });

  it('extract equals GNU tar -x of the same blob (artefacts hidden, whiteouts converted)', () => {
    const out = join(work, 'out-estargz');
    const ref = join(work, 'ref-estargz');
    const r = cli('extract', '--toc-digest', fx.tocDigest, blob, out);
    expect(r.code, r.stderr).toBe(0);
    gnuExtract(blob, ref);
    const ignore = (p: string): boolean => ESTARGZ_ARTEFACTS.has(p);
    const diffs = compareTrees(snapshotTree(ref, { ignore }), snapshotTree(out), ['gnu-tar', 'lazy-als']);
    // GNU tar does not create implied parents with 0755 root:root at mtime 0 from nothing: it uses
    // the umask and the current time, so implied directories are compared by type only.
    const implied = new Set(['"implied"', '"implied/deep"', '"uni"']);
    expect(diffs.filter((d) => !(implied.has(d.split(':')[0]!) && /: (mode|mtimeSec) /.test(d)))).toEqual([]);
    expect(snapshotTree(out).get('etc/passwd')!.links).toEqual(['etc/hard', 'etc/passwd']);
  });

  it('a chunk that does not match its digest: exit 1, no DIR', () => {
    const bytes = Buffer.from(fx.blob);
    // Flip bytes inside the payload area (after the first members, before the TOC).
    const at = fx.memberOffsets[Math.floor(fx.memberOffsets.length / 2)]! + 12;
    for (let i = 0; i < 8; i++) bytes[at + i]! ^= 0xff;
    const bad = join(work, 'bad.estargz');
    writeFileSync(bad, bytes);
    const out = join(work, 'out-bad-estargz');
    const r = cli('extract', '--toc-digest', fx.tocDigest, bad, out);
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/CHUNK_DIGEST_MISMATCH|DECOMPRESS_FAILED/);
    expect(existsSync(out)).toBe(false);
    expect(cli('inspect', '--toc-digest', fx.tocDigest, bad).code).toBe(1);
  });
});
