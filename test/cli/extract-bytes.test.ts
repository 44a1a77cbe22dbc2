/**
 * `lazy-als extract` writes names with their exact bytes (non-UTF-8 included) for every kind of
 * entry, including the fifos and devices that are made by argv-taking tools, and the symlink
 * targets; pre-epoch mtimes land as 0 (containers/storage semantics). NEEDS root (owners, mknod).
 */
import { lstatSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isRoot } from '../helpers/gnu-tar-fixture.js';
import { buildTar } from '../helpers/writers/tar.js';
import { buildZstdChunked } from '../helpers/writers/zstd-chunked.js';

const work = mkdtempSync(join(tmpdir(), 'extract-bytes-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

// The extract engine runs its filesystem calls in worker threads loaded from dist/ (compiled JS).
const repo = join(import.meta.dirname, '../..');
type Dist = {
  BufferBlob: typeof import('../../src/core/blob.js').BufferBlob;
  extractLayer: typeof import('../../src/extract/extract-tree.js').extractLayer;
  openPlainLayer: typeof import('../../src/formats/tar/index.js').openPlainLayer;
  openZstdChunked: typeof import('../../src/formats/zstd-chunked/index.js').openZstdChunked;
};
let BufferBlob: Dist['BufferBlob'];
let extractLayer: Dist['extractLayer'];
let openPlainLayer: Dist['openPlainLayer'];
let openZstdChunked: Dist['openZstdChunked'];
beforeAll(async () => {
  execFileSync('npm', ['run', 'build'], { cwd: repo, stdio: 'ignore' });
  ({ BufferBlob } = await import(join(repo, 'dist/core/blob.js')));
  ({ extractLayer } = await import(join(repo, 'dist/extract/extract-tree.js')));
  ({ openPlainLayer } = await import(join(repo, 'dist/formats/tar/index.js')));
  ({ openZstdChunked } = await import(join(repo, 'dist/formats/zstd-chunked/index.js')));
}, 180_000);

const raw = (s: string): Buffer => Buffer.from(s, 'latin1');
const P = (...parts: Buffer[]): Buffer => Buffer.concat(parts.flatMap((p, i) => (i ? [Buffer.from('/'), p] : [p])));

describe.skipIf(!isRoot)('extract writes exact name bytes', () => {
  it('plain tar: file, dir, fifo, device, symlink target, hardlink with non-UTF-8 names', async () => {
    const dir = raw('d\xe9');
    const file = raw('f\xff\xfe');
    const tar = buildTar([
      { name: 'd', rawName: dir, type: 'dir', mode: 0o755 },
      { name: 'f', rawName: P(dir, file), type: 'reg', data: Buffer.from('hello'), mode: 0o640, uid: 7, gid: 8, mtime: 1_700_000_000 },
      { name: 'p', rawName: raw('pipe\xff'), type: 'fifo', mode: 0o600 },
      { name: 'c', rawName: raw('dev\xfe'), type: 'char', devMajor: 1, devMinor: 3, mode: 0o666 },
      { name: 's', rawName: raw('link\xff'), type: 'symlink', rawLinkName: P(dir, file) },
      { name: 'h', rawName: raw('hard\xff'), type: 'hardlink', rawLinkName: P(dir, file) },
      { name: 'old', type: 'reg', paxMtime: '-86400' },
    ]);
    const dest = join(work, 'plain');
    await extractLayer(dest, async (hooks) => {
      const blob = new BufferBlob(tar, 't.tar');
      const { index } = await openPlainLayer(blob, { onPlainChunk: hooks.onPlainChunk });
      return { index, blob };
    });
    const d = Buffer.from(dest);
    const names = readdirSync(d, { encoding: 'buffer' }).map((b) => b.toString('latin1')).sort();
    expect(names).toEqual(['dev\xfe', 'd\xe9', 'hard\xff', 'link\xff', 'old', 'pipe\xff']);
    const f = P(d, dir, file);
    expect(readFileSync(f).toString()).toBe('hello');
    expect(lstatSync(f)).toMatchObject({ uid: 7, gid: 8, mode: 0o100640, nlink: 2 });
    expect(lstatSync(f).mtimeMs).toBe(1_700_000_000_000);
    expect(lstatSync(P(d, raw('pipe\xff'))).isFIFO()).toBe(true);
    expect(lstatSync(P(d, raw('dev\xfe'))).isCharacterDevice()).toBe(true);
    expect(readlinkSync(P(d, raw('link\xff')), { encoding: 'buffer' }).equals(P(dir, file))).toBe(true);
    expect(lstatSync(P(d, raw('hard\xff'))).ino).toBe(lstatSync(f).ino);
    expect(lstatSync(join(dest, 'old')).mtimeMs).toBe(0);
  });

  it('GNU tar PAX sparse files (0.0, 0.1, 1.0): real names, sizes and bytes land, holes included (a leading, trailing, every-other and all-hole file)', async () => {
    const src = join(work, 'sparse-src');
    execFileSync('/usr/bin/python3', [join(repo, 'test/helpers/corpus/corpus.py'), 'sparse', join(src, 's')]);
    const want = readdirSync(Buffer.from(join(src, 's')), { encoding: 'buffer' });
    expect(want.length).toBeGreaterThan(4);
    for (const version of ['0.0', '0.1', '1.0']) {
      const out = join(work, `sparse-${version}.tar`);
      execFileSync('tar', ['--format=posix', '--sparse', `--sparse-version=${version}`, '--numeric-owner', '-C', src, '-cf', out, 's']);
      const tar = readFileSync(out);
      const dest = join(work, `sparse-${version}`);
      await extractLayer(dest, async (hooks) => {
        const blob = new BufferBlob(tar, out);
        const { index } = await openPlainLayer(blob, { onPlainChunk: hooks.onPlainChunk });
        return { index, blob };
      });
      for (const name of want) {
        const a = readFileSync(P(Buffer.from(join(src, 's')), name));
        const b = readFileSync(P(Buffer.from(join(dest, 's')), name));
        expect(b.length, `${version} ${name.toString('latin1')}`).toBe(a.length);
        expect(b.equals(a), `${version} ${name.toString('latin1')}`).toBe(true);
      }
    }
  });

  it('zstd:chunked: the tar-split name bytes, not the TOC mangled name, land on disk', async () => {
    const w = buildZstdChunked([{ name: 'x', rawName: raw('n\xff'), type: 'reg', data: Buffer.from('zz') }]);
    const dest = join(work, 'zc');
    await extractLayer(dest, async () => {
      const blob = new BufferBlob(w.blob, 'zc');
      const { index } = await openZstdChunked(blob, { descriptor: { annotations: w.annotations } });
      return { index, blob };
    });
    expect(readdirSync(Buffer.from(dest), { encoding: 'buffer' }).map((b) => b.toString('latin1'))).toEqual(['n\xff']);
    expect(readFileSync(P(Buffer.from(dest), raw('n\xff'))).toString()).toBe('zz');
  });
});

describe('extract and inspect of a TOC that lies about its tar', () => {
  it('eStargz with an authentic TOC that misstates a mode: inspect exits 1, extract leaves no DIR', async () => {
    const { buildEStargz, sampleEntries } = await import('../helpers/writers/estargz.js');
    const { writeFileSync, existsSync } = await import('node:fs');
    const { spawnSync } = await import('node:child_process');
    const cli = (...a: string[]) => spawnSync(process.execPath, [join(repo, 'bin/lazy-als.js'), ...a], { encoding: 'utf8' });
    // Without the sample's xattrs (a raw security.capability value the test filesystem may refuse).
    const entries = sampleEntries().map(({ xattrs: _x, ...e }) => e);
    const honest = buildEStargz(entries, { chunkSize: 4096 });
    const lying = buildEStargz(entries, {
      chunkSize: 4096,
      editToc: (toc) => void (toc.entries.find((e) => e['name'] === './etc/passwd')!['mode'] = 0o4755),
    });
    const hp = join(work, 'honest.esgz');
    const lp = join(work, 'lying.esgz');
    writeFileSync(hp, honest.blob);
    writeFileSync(lp, lying.blob);
    const ok = cli('inspect', '--json', '--toc-digest', honest.tocDigest, '--diff-id', honest.diffId, hp);
    expect(ok.status, ok.stderr).toBe(0);
    expect(JSON.parse(ok.stdout.split('\n')[0]!).layer).toMatchObject({ tarVerified: true, diffId: honest.diffId, diffIdVerified: true });
    const bad = cli('inspect', '--toc-digest', lying.tocDigest, lp);
    expect(bad.status).toBe(1);
    expect(bad.stderr).toMatch(/FORMAT_CONFLICT.*mode/);
    expect(bad.stdout).toBe('');
    const wrongDiff = cli('inspect', '--toc-digest', honest.tocDigest, '--diff-id', lying.diffId.replace(/.$/, (c) => (c === '0' ? '1' : '0')), hp);
    expect(wrongDiff.status).toBe(1);
    expect(wrongDiff.stderr).toMatch(/DIFFID_MISMATCH/);
    if (isRoot) {
      const dest = join(work, 'lying-out');
      const x = cli('extract', '--toc-digest', lying.tocDigest, lp, dest);
      expect(x.status).toBe(1);
      expect(x.stderr).toMatch(/FORMAT_CONFLICT/);
      expect(existsSync(dest)).toBe(false);
      const y = cli('extract', '--toc-digest', honest.tocDigest, '--diff-id', honest.diffId, hp, join(work, 'honest-out'));
      expect(y.status, y.stderr).toBe(0);
    }
  });
});
