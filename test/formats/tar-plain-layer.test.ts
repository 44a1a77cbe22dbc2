import { byteStringFromText as B, toText, type ByteString } from '../../src/formats/byte-string.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, lstatSync, rmSync, writeFileSync, existsSync, renameSync, openSync, writeSync, closeSync, readlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BufferBlob, FileBlob } from '../../src/core/blob.js';
import { sha256Of, type Digest } from '../../src/core/digest.js';
import { readVerifiedChunks } from '../../src/formats/chunk-reader.js';
import { FormatError } from '../../src/formats/errors.js';
import type { LayerIndex } from '../../src/formats/model.js';
import { loadPlainRecord, openPlainLayer } from '../../src/formats/tar/index.js';
import { UNADDRESSED_DIGEST } from '../../src/formats/tar/plain-record.js';
import { compressFile, gnuTar, isRoot, LONG_DIR, makeFixtureTree, UNICODE_NAME } from '../helpers/gnu-tar-fixture.js';
import { buildTar } from '../helpers/writers/tar.js';

const work = mkdtempSync(join(tmpdir(), 'plain-layer-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** Every regular file under `root`: relative path → content. */
function sourceFiles(root: string): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  const walk = (rel: string): void => {
    for (const name of readdirSync(join(root, rel))) {
      const r = rel ? `${rel}/${name}` : name;
      const st = lstatSync(join(root, r));
      if (st.isDirectory()) walk(r);
      else if (st.isFile() && !name.startsWith('.wh.')) out.set(r, readFileSync(join(root, r)));
    }
  };
  walk('');
  return out;
}

function describeIndex(ix: LayerIndex): string[] {
  return [...ix.walk()].map(([p, n]) =>
    JSON.stringify([p, n.ino, n.type, n.mode, n.uid, n.gid, n.size, n.mtimeSec, n.mtimeNsec, n.linkTarget, n.rdevMajor, n.rdevMinor, n.nlink, n.digest,
      [...n.xattrs].map(([k, v]) => [k, v.toString('base64')]), n.chunks]),
  );
}

async function expectCode(p: Promise<unknown>, code: string): Promise<FormatError> {
  const e = await p.then(() => undefined, (x: unknown) => x);
  expect(e).toBeInstanceOf(FormatError);
  expect((e as FormatError).code).toBe(code);
  return e as FormatError;
}

describe.skipIf(!isRoot)('plain layers made by GNU tar, gzip and zstd', () => {
  const src = join(work, 'src');
  const files: Record<string, string> = {};
  let tarBytes: Buffer;
  beforeAll(() => {
    makeFixtureTree(src);
    gnuTar(src, join(work, 'pax.tar'), 'pax');
    gnuTar(src, join(work, 'gnu.tar'), 'gnu');
    files['tar'] = join(work, 'pax.tar');
    files['gnu'] = join(work, 'gnu.tar');
    files['tar+gzip'] = compressFile(join(work, 'pax.tar'), 'gzip');
    files['tar+zstd'] = compressFile(join(work, 'pax.tar'), 'zstd');
    tarBytes = readFileSync(join(work, 'pax.tar'));
  });

  for (const kind of ['tar', 'tar+gzip', 'tar+zstd', 'gnu'] as const) {
    it(`${kind}: index matches the source tree and every chunk verifies`, async () => {
      const path = files[kind]!;
      const blobBytes = readFileSync(path);
      const blob = await FileBlob.open(path);
      try {
        const received = new Map<string, Buffer[]>();
        const { index, record } = await openPlainLayer(blob, {
          descriptor: { digest: sha256Of(blobBytes), size: blobBytes.length },
          diffId: sha256Of(kind === 'gnu' ? blobBytes : tarBytes),
          onPlainChunk: (chunk, data, pb) => {
            const p = toText(pb as ByteString);
            expect(sha256Of(data)).toBe(chunk.digest);
            expect(data.length).toBeLessThanOrEqual(1024 * 1024);
            const l = received.get(p) ?? [];
            expect(chunk.fileOffset).toBe(l.reduce((a, b) => a + b.length, 0));
            l.push(Buffer.from(data));
            received.set(p, l);
          },
        });
        expect(index.format).toBe(kind === 'gnu' ? 'tar' : kind);
        expect(index.blobDigest).toBe(sha256Of(blobBytes));
        expect(index.diffId).toBe(sha256Of(kind === 'gnu' ? blobBytes : tarBytes));
        expect(index.uncompressedSize).toBe(kind === 'gnu' ? blobBytes.length : tarBytes.length);

        const want = sourceFiles(src);
        for (const [rel, content] of want) {
          const node = index.lookup(B(rel));
          expect(node?.type, rel).toBe('reg');
          expect(node!.size).toBe(content.length);
          const bufs = await readVerifiedChunks(blob, { compression: index.compression, blobName: blob.name }, node!.chunks.map((chunk) => ({ chunk, entry: rel })));
          expect(Buffer.concat(bufs).equals(content), rel).toBe(true);
          // Hardlinked names share the content delivered under the first name.
          if (received.has(rel)) expect(Buffer.concat(received.get(rel)!).equals(content), rel).toBe(true);
          else if (content.length > 0) expect(['dir/hard', 'hard2', 'dir/file.txt']).toContain(rel);
          expect(node!.digest).toBe(content.length > 0 ? sha256Of(content) : undefined);
        }
        expect(index.lookup(B('dir/big.bin'))!.chunks.length).toBe(4);

        const file = index.lookup(B('dir/file.txt'))!;
        expect(file.mode).toBe(0o640);
        expect(index.lookup(B('dir/hard'))?.ino).toBe(file.ino);
        expect(index.lookup(B('hard2'))?.ino).toBe(file.ino);
        expect(index.lookup(B('dir/sym'))).toMatchObject({ type: 'symlink', linkTarget: 'file.txt', uid: 1000, gid: 1000, size: 8 });
        expect(index.lookup(B('dir/abs-sym'))?.linkTarget).toBe('/etc/passwd');
        expect(index.lookup(B('dir/long-target-sym'))?.linkTarget).toBe('../' + 'x'.repeat(150));
        expect(index.lookup(B(`${LONG_DIR}/${'f'.repeat(200)}`))?.type).toBe('reg');
        expect(index.lookup(B(UNICODE_NAME))?.type).toBe('reg');
        expect(index.lookup(B('setuid'))?.mode).toBe(0o4755);
        expect(index.lookup(B('sticky'))).toMatchObject({ type: 'dir', mode: 0o1777 });
        expect(index.lookup(B('owned'))).toMatchObject({ uid: 1000, gid: 2000 });
        expect(index.lookup(B('bigid'))).toMatchObject({ uid: 3_000_000, gid: 3_000_001 });
        expect(index.lookup(B('fifo'))).toMatchObject({ type: 'fifo', mode: 0o620 });
        expect(index.lookup(B('chardev'))).toMatchObject({ type: 'char', rdevMajor: 1, rdevMinor: 3, mode: 0o640 });
        expect(index.lookup(B('blockdev'))).toMatchObject({ type: 'block', rdevMajor: 7, rdevMinor: 200 });
        // Whiteouts in overlay form; the real entry wins over its whiteout.
        expect(index.lookup(B('dir/gone'))).toMatchObject({ type: 'char', rdevMajor: 0, rdevMinor: 0, mode: 0 });
        expect(index.lookup(B('dir/.wh.gone'))).toBeUndefined();
        expect(index.lookup(B('opq'))!.xattrs.get('trusted.overlay.opaque')?.toString()).toBe('y');
        expect(index.lookup(B('opq/.wh..wh..opq'))).toBeUndefined();
        expect(index.root.mtimeSec).toBe(1_720_000_000);
        expect(index.lookup(B('dir'))).toMatchObject({ mode: 0o750, mtimeSec: 1_710_000_000 });
        if (kind !== 'gnu') {
          // PAX: fractional mtimes and xattrs (GNU format carries neither).
          expect(file.mtimeNsec).toBe(250_000_000);
          expect(index.lookup(B('dir'))!.mtimeNsec).toBe(750_000_000);
          expect(file.xattrs.get('user.test')?.toString()).toBe('value-1');
          expect(file.xattrs.get('user.bin')).toEqual(Buffer.from([0, 1, 2, 3, 255]));
          const cap = index.lookup(B('cap'));
          if (cap) expect(cap.xattrs.get('security.capability')?.length).toBeGreaterThan(0);
        } else {
          expect(file.mtimeNsec).toBe(0);
        }
        // The record rebuilds the same index without the blob.
        const again = loadPlainRecord(JSON.parse(JSON.stringify(record)));
        expect(describeIndex(again)).toEqual(describeIndex(index));
        // Three names, one inode (overlay-view counts names per node).
        expect(file.nlink).toBe(3);
      } finally {
        await blob.close();
      }
    });
  }

  for (const kind of ['tar', 'tar+gzip'] as const) {
    it(`${kind}: unaddressedPieces (extract) gives the same tree, hashes no piece, has no record, and its chunks serve nothing`, async () => {
      const path = files[kind]!;
      const blobBytes = readFileSync(path);
      const opts = { descriptor: { digest: sha256Of(blobBytes), size: blobBytes.length }, diffId: sha256Of(tarBytes) };
      const plain = await FileBlob.open(path);
      const shared = await FileBlob.open(path, { sharedMemory: true });
      try {
        const addressed = await openPlainLayer(plain, opts);
        const received = new Map<string, Buffer[]>();
        let sharedPieces = 0;
        const opened = await openPlainLayer(shared, {
          ...opts,
          unaddressedPieces: true,
          onPlainChunk: (chunk, data, pb) => {
            expect(chunk.digest).toBe(UNADDRESSED_DIGEST);
            if (data.buffer instanceof SharedArrayBuffer) sharedPieces++;
            const l = received.get(toText(pb as ByteString)) ?? [];
            l.push(Buffer.from(data));
            received.set(toText(pb as ByteString), l);
          },
        });
        const { index } = opened;
        // Same tree and pieces, only without content addresses (no piece or file digest).
        const strip = (ix: LayerIndex): string[] =>
          [...ix.walk()].map(([p, n]) => JSON.stringify([p, n.ino, n.type, n.mode, n.uid, n.gid, n.size, n.mtimeSec, n.mtimeNsec, n.linkTarget, n.chunks.map((c) => [c.fileOffset, c.size, c.span, c.zeros])]));
        expect(strip(index)).toEqual(strip(addressed.index));
        expect(index.blobDigest).toBe(addressed.index.blobDigest);
        expect(index.diffId).toBe(addressed.index.diffId);
        for (const [rel, content] of sourceFiles(src)) {
          const n = index.lookup(B(rel))!;
          expect(n.digest, rel).toBeUndefined();
          if (received.has(rel)) expect(Buffer.concat(received.get(rel)!).equals(content), rel).toBe(true);
        }
        // An uncompressed tar's pieces are views of the shared reads: extract's workers take them uncopied.
        if (kind === 'tar') expect(sharedPieces).toBe([...received.values()].reduce((a, l) => a + l.length, 0));
        expect(() => opened.record).toThrow(FormatError);
        // Nothing can be served through such an index: no bytes hash to UNADDRESSED_DIGEST.
        const big = index.lookup(B('dir/big.bin'))!;
        await expectCode(readVerifiedChunks(plain, { compression: index.compression, blobName: plain.name }, [{ chunk: big.chunks[0]!, entry: 'dir/big.bin' }]), 'CHUNK_DIGEST_MISMATCH');
      } finally {
        await plain.close();
        await shared.close();
      }
    });
  }

  it('wrong blob digest / diffID / size: typed errors, staged content never committed', async () => {
    const path = files['tar+gzip']!;
    const bytes = readFileSync(path);
    const wrong = sha256Of(Buffer.from('something else'));
    const cases: [string, Parameters<typeof openPlainLayer>[1]][] = [
      ['BLOB_DIGEST_MISMATCH', { descriptor: { digest: wrong } }],
      ['BLOB_DIGEST_MISMATCH', { descriptor: { digest: sha256Of(bytes), size: bytes.length + 1 } }],
      ['DIFFID_MISMATCH', { descriptor: { digest: sha256Of(bytes) }, diffId: wrong }],
    ];
    for (const [code, opts] of cases) {
      // The staging pattern a real consumer uses: write pieces into a temp dir, rename on success only.
      const staging = join(work, `staging-${code}`);
      const final = join(work, `final-${code}`);
      mkdirSync(staging);
      let pieces = 0;
      const p = openPlainLayer(new BufferBlob(bytes, path), {
        ...opts,
        onPlainChunk: (chunk, data) => {
          pieces++;
          writeFileSync(join(staging, chunk.digest.slice(7)), data);
        },
      }).then(() => renameSync(staging, final));
      await expectCode(p.finally(() => rmSync(staging, { recursive: true, force: true })), code);
      expect(existsSync(final)).toBe(false);
      expect(existsSync(staging)).toBe(false);
      if (opts?.descriptor?.size === undefined) expect(pieces).toBeGreaterThan(0); // content was delivered before the verdict
    }
  });

  it('a corrupted gzip blob is DECOMPRESS_FAILED, or BLOB_DIGEST_MISMATCH when its digest is known', async () => {
    const bytes = Buffer.from(readFileSync(files['tar+gzip']!));
    const good = sha256Of(bytes);
    for (let i = 100; i < 110; i++) bytes[Math.floor(bytes.length / 2) + i]! ^= 0x55;
    await expectCode(openPlainLayer(new BufferBlob(bytes), {}), 'DECOMPRESS_FAILED');
    await expectCode(openPlainLayer(new BufferBlob(bytes), { descriptor: { digest: good } }), 'BLOB_DIGEST_MISMATCH');
  });

  it('truncated zstd and truncated tar are typed errors', async () => {
    const z = readFileSync(files['tar+zstd']!);
    const e = await openPlainLayer(new BufferBlob(z.subarray(0, Math.floor(z.length * 0.6))), {}).then(() => undefined, (x: unknown) => x);
    expect(e).toBeInstanceOf(FormatError);
    expect(['DECOMPRESS_FAILED', 'TAR_INVALID']).toContain((e as FormatError).code);
    await expectCode(openPlainLayer(new BufferBlob(tarBytes.subarray(0, 512 * 7 + 100)), {}), 'TAR_INVALID');
  });

  it('bomb guard: DECOMPRESS_LIMIT past maxUncompressedBytes', async () => {
    await expectCode(openPlainLayer(new BufferBlob(readFileSync(files['tar+zstd']!)), { maxUncompressedBytes: 100_000 }), 'DECOMPRESS_LIMIT');
  });

  it('GNU tar PAX sparse files (0.0, 0.1, 1.0) are served as their real bytes, holes as zeros, also from the record; the old GNU S type is refused', async () => {
    const sp = join(work, 'sparse-src');
    mkdirSync(sp);
    // holes first, data in the middle and at the end, a file that is all hole, a non-UTF-8 name
    const files: [string, number, [number, Buffer][]][] = [
      ['holes', 8 * 1024 * 1024 + 5, [[3 * 1024 * 1024, Buffer.alloc(70_000, 0x61)], [8 * 1024 * 1024, Buffer.from('tail!')]]],
      ['all-hole', 2 * 1024 * 1024, []],
      ['many', 64 * 65536, Array.from({ length: 64 }, (_, i) => [i * 65536, Buffer.alloc(4096, i + 1)] as [number, Buffer])],
    ];
    const want = new Map<string, Buffer>();
    for (const [name, size, extents] of files) {
      const fd = openSync(join(sp, name), 'w');
      const content = Buffer.alloc(size);
      for (const [off, data] of extents) {
        writeSync(fd, data, 0, data.length, off);
        data.copy(content, off);
      }
      closeSync(fd);
      execFileSync('truncate', ['-s', String(size), join(sp, name)]);
      want.set(name, content);
    }
    for (const version of ['0.0', '0.1', '1.0']) {
      const out = join(work, `sparse-${version}.tar`);
      execFileSync('tar', ['--sparse', '--format=posix', `--sparse-version=${version}`, '--sort=name', '-C', sp, '-cf', out, '.']);
      const tar = readFileSync(out);
      expect(tar.length, 'GNU tar really wrote sparse entries').toBeLessThan(1024 * 1024);
      const blob = new BufferBlob(tar, out);
      const { index, record } = await openPlainLayer(blob, { descriptor: { digest: sha256Of(tar), size: tar.length } });
      for (const ix of [index, loadPlainRecord(JSON.parse(JSON.stringify(record)) as typeof record)]) {
        for (const [name, content] of want) {
          const node = ix.lookup(B(name));
          expect(node?.size, `${version} ${name}`).toBe(content.length);
          const bufs = await readVerifiedChunks(blob, { compression: 'none', blobName: out }, node!.chunks.map((chunk) => ({ chunk, entry: name })));
          expect(sha256Of(Buffer.concat(bufs)), `${version} ${name}`).toBe(sha256Of(content));
          expect(node!.chunks.some((c) => c.zeros), 'holes are zero chunks, never fetched').toBe(true);
        }
      }
      expect([...index.walk()].map(([p]) => p).filter((p) => p.includes('GNUSparse'))).toEqual([]); // 1.0's header name is not served
    }
    const old = join(work, 'sparse-gnu.tar');
    execFileSync('tar', ['--sparse', '--format=gnu', '-C', sp, '-cf', old, 'holes']);
    const e = await expectCode(openPlainLayer(new BufferBlob(readFileSync(old)), {}), 'TAR_INVALID');
    expect(e.message).toMatch(/sparse/);
    expect(e.message).toContain('holes');
  });

  it('sparse holes count against the bomb guard (a 5 GiB hole in a tiny tar)', async () => {
    const sp = join(work, 'sparse-bad');
    mkdirSync(sp);
    execFileSync('truncate', ['-s', '5G', join(sp, 'huge-hole')]);
    const out = join(work, 'sparse-huge.tar');
    execFileSync('tar', ['--sparse', '--format=posix', '-C', sp, '-cf', out, 'huge-hole']);
    const tar = readFileSync(out);
    await expectCode(openPlainLayer(new BufferBlob(tar), { maxUncompressedBytes: 1024 * 1024 * 1024 }), 'DECOMPRESS_LIMIT');
  });

  it('a symlink in the layer is recorded, never followed', async () => {
    // GNU tar archives the link itself; the view must keep it a symlink with the same target.
    expect(readlinkSync(join(src, 'dir/sym'))).toBe('file.txt');
  });
});

describe('plain layers from the test tar writer', () => {
  it('uncompressed layer spans point straight into the tar', async () => {
    const data = Buffer.alloc(2 * 1024 * 1024 + 5, 3);
    const tar = buildTar([
      { name: './', type: 'dir', mode: 0o711, mtime: 5 },
      { name: 'a/b', type: 'reg', data },
      { name: 'a/b', type: 'reg', data: Buffer.from('replaced') },
    ]);
    const { index } = await openPlainLayer(new BufferBlob(tar), { diffId: sha256Of(tar) as Digest });
    expect(index.format).toBe('tar');
    expect(index.root).toMatchObject({ mode: 0o711, mtimeSec: 5 });
    const n = index.lookup(B('a/b'))!;
    expect(n.size).toBe(8); // tar semantics: the later entry replaces the earlier one
    expect(n.chunks[0]!.span.innerOffset).toBe(0);
    expect(tar.subarray(n.chunks[0]!.span.offset, n.chunks[0]!.span.end).toString()).toBe('replaced');
    expect(index.lookup(B('a'))).toMatchObject({ type: 'dir', mode: 0o755 }); // implied parent
  });

  it('empty blob is an empty layer; hostile names are refused', async () => {
    const { index } = await openPlainLayer(new BufferBlob(Buffer.alloc(0)), {});
    expect(index.nodeCount).toBe(1);
    await expectCode(openPlainLayer(new BufferBlob(buildTar([{ name: '../escape', type: 'reg', data: Buffer.from('x') }])), {}), 'ENTRY_PATH_UNSAFE');
    await expectCode(openPlainLayer(new BufferBlob(buildTar([{ name: '/abs', type: 'reg' }])), {}), 'ENTRY_PATH_UNSAFE');
  });
});
