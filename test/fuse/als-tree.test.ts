/**
 * The ALS tree through a REAL FUSE mount (fuse-native, kernel, overlayfs); syscalls come from child
 * processes. Layers come from StandInProvider, a stand-in for the catalog (see its header).
 */
import { createHash } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { refToBase64 } from '../../src/sources/reference.js';
import { BIG, CAP, KEY1, KEY2, lowerLayer, upperLayer } from './fixtures.js';
import { getfattr, listxattr, probe, probe1, run, tempMount, type TempMount } from './helpers/mount-fixture.js';
import { keyOf, StandInProvider } from './helpers/stand-in-provider.js';
import { asByteString } from '../../src/formats/byte-string.js';

const REF = refToBase64('localhost:5000/e2e/busybox:gzip');
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

describe('ALS tree over a real mount', () => {
  let m: TempMount;
  let provider: StandInProvider;
  let L1: string; // <mnt>/<ref>/<key1>
  let L2: string;

  beforeAll(async () => {
    provider = new StandInProvider().add(lowerLayer()).add(upperLayer());
    m = await tempMount(provider);
    L1 = join(m.mnt, REF, KEY1);
    L2 = join(m.mnt, REF, KEY2);
  });
  afterAll(async () => {
    await m?.close();
  });

  it('serves root, ref and key dirs; rejects names that are not base64 refs or digests', async () => {
    const r = await probe([
      { op: 'stat', path: m.mnt },
      { op: 'stat', path: join(m.mnt, REF) },
      { op: 'stat', path: L1 },
      { op: 'stat', path: join(m.mnt, 'not-base64!') },
      { op: 'stat', path: join(m.mnt, Buffer.from('NOT A REF::').toString('base64')) },
      { op: 'stat', path: join(m.mnt, REF, 'sha256:1234') },
      { op: 'stat', path: join(L1, 'diff1') },
      { op: 'stat', path: join(L1, 'info', 'x') },
    ]);
    expect(r.map((x) => (x.ok ? x.value.type : x.code))).toEqual(['dir', 'dir', 'dir', 'ENOENT', 'ENOENT', 'ENOENT', 'ENOENT', 'ENOTDIR']);
  });

  it('serves diff/info/blob for known layers, ENOENT for unknown ones, with and without :ref', async () => {
    const unknown = join(m.mnt, REF, keyOf('nope'));
    const r = await probe([
      { op: 'access', path: join(L1, 'diff') },
      { op: 'access', path: join(L1, 'info') },
      { op: 'access', path: join(L1, 'blob') },
      { op: 'access', path: join(unknown, 'diff') },
      { op: 'access', path: join(unknown, 'info') },
      { op: 'stat', path: join(m.mnt, KEY1, 'diff', 'etc', 'base.txt') },
      { op: 'read', path: join(m.mnt, KEY1, 'diff', 'etc', 'base.txt') },
    ]);
    expect(r.map((x) => (x.ok ? 'ok' : x.code))).toEqual(['ok', 'ok', 'ok', 'ENOENT', 'ENOENT', 'ok', 'ok']);
    expect(r[6]!.ok && r[6]!.value.text).toBe('hello from base layer\n');
  });

  it('info has the exact bytes and size, the same on every read; blob is the exact blob', async () => {
    const layer = provider.layers.get(KEY1)!;
    const r = await probe([
      { op: 'stat', path: join(L1, 'info') },
      { op: 'read', path: join(L1, 'info') },
      { op: 'read', path: join(L1, 'info') },
      { op: 'stat', path: join(L1, 'blob') },
      { op: 'read', path: join(L1, 'blob') },
    ]);
    const [st, a, b, bst, blob] = r.map((x) => (x.ok ? x.value : x.code));
    expect(st.size).toBe(layer.info.length);
    expect(a.text).toBe(layer.info.toString());
    expect(b.sha256).toBe(a.sha256);
    expect(bst.size).toBe(layer.blobSize);
    expect(blob.sha256).toBe(sha(await layer.readBlob(0, layer.blobSize)));
  });

  it('lists diff with correct types, whiteouts as char 0:0, opaque markers hidden', async () => {
    const r = await probe([
      { op: 'readdir', path: join(L1, 'diff') },
      { op: 'readdir', path: join(L1, 'diff', 'dev') },
      { op: 'readdir', path: join(L2, 'diff', 'etc') },
      { op: 'readdir', path: join(L2, 'diff', 'opq') },
      { op: 'lstat', path: join(L2, 'diff', 'etc', 'deleted.txt') },
      { op: 'lstat', path: join(L1, 'diff', 'dev', 'null') },
    ]);
    const v = r.map((x) => (x.ok ? x.value : x.code));
    expect(v[0]).toEqual([
      { name: 'big.bin', type: 'reg' }, { name: 'bin', type: 'dir' }, { name: 'dev', type: 'dir' },
      { name: 'etc', type: 'dir' }, { name: 'opq', type: 'dir' },
    ]);
    expect(v[1]).toEqual([{ name: 'fifo', type: 'fifo' }, { name: 'null', type: 'char' }]);
    expect(v[2]).toEqual([{ name: 'deleted.txt', type: 'char' }, { name: 'layer2.txt', type: 'reg' }]);
    expect(v[3]).toEqual([{ name: 'new.txt', type: 'reg' }]);
    expect(v[4]).toMatchObject({ type: 'char', rdev: 0 });
    expect(v[5]).toMatchObject({ type: 'char', rdev: 0x103, mode: 0o20666 });
  });

  it('serves attributes, symlinks, hardlinks (shared inode) and unique inodes across layers', async () => {
    const r = await probe([
      { op: 'lstat', path: join(L1, 'diff', 'bin', 'ping') },
      { op: 'lstat', path: join(L1, 'diff', 'bin', 'hl') },
      { op: 'lstat', path: join(L1, 'diff', 'bin', 'sh') },
      { op: 'readlink', path: join(L1, 'diff', 'bin', 'sh') },
      { op: 'lstat', path: join(L1, 'diff', 'big.bin') },
      { op: 'lstat', path: join(L2, 'diff', 'etc') },
      { op: 'lstat', path: join(L1, 'diff', 'etc') },
      { op: 'lstat', path: join(m.mnt, KEY1, 'diff', 'etc') },
    ]);
    const v = r.map((x) => (x.ok ? x.value : x.code));
    // nlink is passed through from the index exactly (hardlink counting itself is formats/overlay-view's job).
    const ping = provider.layers.get(KEY1)!.index.lookup(asByteString('bin/ping'))!;
    expect(v[0]).toMatchObject({ mode: 0o104755, nlink: ping.nlink, size: 7, mtimeMs: 1_704_067_200_000 });
    expect(v[1].ino).toBe(v[0].ino);
    expect(v[2]).toMatchObject({ type: 'symlink', size: '/bin/busybox'.length });
    expect(v[3]).toBe('/bin/busybox');
    expect(v[4]).toMatchObject({ size: BIG.length, uid: 1000, gid: 1000 });
    expect(v[5].ino).not.toBe(v[6].ino); // different layers, different numbers
    expect(v[7].ino).toBe(v[6].ino); // same layer through another path: same numbers
  });

  it('serves every xattr incl. security.capability and both opaque markers; unknown ⇒ ENODATA', async () => {
    const cap = await run('getfattr', ['-h', '--absolute-names', '-e', 'hex', '-n', 'security.capability', join(L1, 'diff', 'bin', 'ping')]);
    expect(cap.stdout).toContain(`security.capability=0x${CAP.toString('hex')}`);
    expect((await getfattr(join(L1, 'diff', 'bin', 'ping'), 'user.note')).value).toBe('hi');
    // a non-ASCII xattr name is its UTF-8 bytes on every backend (PAX keys are UTF-8)
    expect((await getfattr(join(L1, 'diff', 'bin', 'ping'), 'user.naïve-名前')).value).toBe('non-ASCII name');
    expect(await listxattr(join(L1, 'diff', 'bin', 'ping'))).toEqual(expect.arrayContaining(['security.capability', 'user.note', 'user.naïve-名前']));
    const opq = join(L2, 'diff', 'opq');
    expect((await getfattr(opq, 'trusted.overlay.opaque')).value).toBe('y');
    expect((await getfattr(opq, 'user.overlay.opaque')).value).toBe('y');
    expect(await listxattr(opq)).toEqual(expect.arrayContaining(['trusted.overlay.opaque', 'user.overlay.opaque']));
    const none = await getfattr(join(L1, 'diff', 'etc'), 'user.nothing');
    expect(none.ok).toBe(false);
    expect(none.stderr).toMatch(/No such attribute/);
  });

  it('reads multi-chunk files exactly, and 32 parallel readers get identical bytes', async () => {
    const path = join(L1, 'diff', 'big.bin');
    const runs = await Promise.all(Array.from({ length: 32 }, () => run('sha256sum', [path])));
    for (const r of runs) expect(r.stdout.split(' ')[0]).toBe(sha(BIG));
    const part = await run('dd', [`if=${path}`, 'bs=4096', 'skip=20', 'count=3', 'status=none']);
    expect(Buffer.from(part.stdout, 'latin1').length).toBeGreaterThan(0);
  });

  it('create/mknod of use counts a use and fails with ENOENT; rmdir of a layer dir releases and fails with ENOENT', async () => {
    const untracked = join(m.mnt, REF, keyOf('never-seen'));
    const r = await probe([
      { op: 'stat', path: join(L1, 'use') },
      { op: 'create', path: join(L1, 'use') },
      { op: 'mknod-like', path: join(m.mnt, KEY2, 'use') },
      { op: 'rmdir', path: L1 },
      { op: 'rmdir', path: untracked },
      { op: 'stat', path: join(L1, 'diff', 'etc', 'base.txt') },
    ]);
    expect(r.map((x) => (x.ok ? 'ok' : x.code))).toEqual(['ENOENT', 'ENOENT', 'ENOENT', 'ENOENT', 'ENOENT', 'ok']);
    expect(provider.uses).toEqual([[REF, KEY1], [undefined, KEY2]]);
    expect(provider.releases).toEqual([[REF, KEY1], [REF, keyOf('never-seen')]]);
  });

  it('answers EROFS to every write inside diff', async () => {
    const d = join(L1, 'diff');
    const r = await probe([
      { op: 'openWrite', path: join(d, 'etc', 'base.txt') },
      { op: 'create', path: join(d, 'etc', 'new.txt') },
      { op: 'mkdir', path: join(d, 'newdir') },
      { op: 'unlink', path: join(d, 'etc', 'base.txt') },
      { op: 'rename', path: join(d, 'etc', 'base.txt'), to: join(d, 'etc', 'x') },
      { op: 'symlink', path: join(d, 'lnk') },
      { op: 'chmod', path: join(d, 'etc', 'base.txt') },
      { op: 'truncate', path: join(d, 'etc', 'base.txt') },
      { op: 'rmdir', path: join(d, 'opq') },
      { op: 'openWrite', path: join(L1, 'info') },
    ]);
    expect(r.map((x) => (x.ok ? 'ok' : x.code))).toEqual(Array(10).fill('EROFS'));
  });

  it('a real overlayfs over two store layers applies whiteouts and opaque dirs', async () => {
    const merged = join(m.dir, 'merged');
    await mkdir(merged);
    // ':' separates lowerdirs, so the colon of "sha256:" is escaped (c/storage uses short symlinks instead).
    const esc = (p: string): string => p.replaceAll(':', '\\:');
    const mo = await run('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${esc(join(L2, 'diff'))}:${esc(join(L1, 'diff'))}`, merged]);
    expect(mo.stderr).toBe('');
    try {
      const r = await probe([
        { op: 'readdir', path: join(merged, 'etc') },
        { op: 'readdir', path: join(merged, 'opq') },
        { op: 'read', path: join(merged, 'etc', 'base.txt') },
        { op: 'stat', path: join(merged, 'etc', 'deleted.txt') },
      ]);
      const v = r.map((x) => (x.ok ? x.value : x.code));
      expect(v[0]).toEqual([{ name: 'base.txt', type: 'reg' }, { name: 'layer2.txt', type: 'reg' }]);
      expect(v[1]).toEqual([{ name: 'new.txt', type: 'reg' }]);
      expect(v[2].text).toBe('hello from base layer\n');
      expect(v[3]).toBe('ENOENT');
    } finally {
      await run('umount', [merged]);
    }
  });

  it('statfs works', async () => {
    const r = await run('stat', ['-f', '-c', '%l', m.mnt]);
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe('255');
  });
});

describe('faults never kill the mount', () => {
  let m: TempMount | undefined;
  afterEach(async () => {
    await m?.close();
    m = undefined;
  });

  it('a provider that throws ⇒ EIO and one log line; the next stat works', async () => {
    const provider = new StandInProvider().add(lowerLayer());
    provider.throwOnKey = KEY2;
    m = await tempMount(provider);
    const r = await probe([
      { op: 'stat', path: join(m.mnt, KEY2, 'diff') },
      { op: 'stat', path: join(m.mnt, KEY1, 'diff', 'etc', 'base.txt') },
    ]);
    expect(r.map((x) => (x.ok ? 'ok' : x.code))).toEqual(['EIO', 'ok']);
    expect(m.log.lines.filter((l) => l['event'] === 'fuse.op_failed')).toHaveLength(1);
  });

  it('a corrupt chunk ⇒ EIO and a log line naming layer, path and chunk digest', async () => {
    const provider = new StandInProvider().add(lowerLayer({ corrupt: 'big.bin' }));
    m = await tempMount(provider);
    const r = await probe([
      { op: 'read', path: join(m.mnt, KEY1, 'diff', 'big.bin') },
      { op: 'read', path: join(m.mnt, KEY1, 'diff', 'etc', 'base.txt') },
    ]);
    expect(r.map((x) => (x.ok ? 'ok' : x.code))).toEqual(['EIO', 'ok']);
    const lines = m.log.lines.filter((l) => l['event'] === 'fuse.read_failed');
    expect(lines.length).toBeGreaterThan(0);
    expect(lines[0]).toMatchObject({ layer: KEY1, path: 'big.bin', chunk: expect.stringMatching(/^sha256:[0-9a-f]{64}$/) });
    expect(m.log.lines.filter((l) => l['event'] === 'fuse.op_failed')).toHaveLength(0);
  });

  it('a lookup slower than its configured deadline ⇒ ETIMEDOUT, and the mount keeps serving', async () => {
    const provider = new StandInProvider().add(lowerLayer());
    provider.delayMs = 1500;
    m = await tempMount(provider, { timeouts: { lookupMs: 300 } });
    const first = await probe1('stat', join(m.mnt, KEY1, 'diff'));
    expect(first).toEqual({ ok: false, code: 'ETIMEDOUT' });
    provider.delayMs = 0;
    // The timed-out lookup kept running and filled the cache; either way the path now resolves.
    await new Promise((r) => setTimeout(r, 1600));
    expect((await probe1('stat', join(m.mnt, KEY1, 'diff', 'etc'))).ok).toBe(true);
  });
});
