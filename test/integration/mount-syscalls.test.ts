/**
 * The REAL daemon (real LayerCatalog, registry client and cache; `node bin/lazy-als.js serve`)
 * through a REAL FUSE mount, against a REAL docker-registry holding an eStargz + zstd:chunked +
 * plain tar+gzip image. Syscalls come from child processes (probe.mjs, getfattr, mount).
 * Expected values come from the fixture writers' inputs, never from the store under test.
 */
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cmd as run, getfattr, listxattr, probe, val } from './support/commands.js';
import { startRegistry, type RegistryHandle } from '../helpers/registry.js';
import { accessSince, logMark } from './support/access-log.js';
import { leakedMounts, RealDaemon, writeRegistriesConf } from './support/daemon.js';
import { CAP, L1_FILES, L2_FILES, L3_FILES, pushTestImage, refElem, sha256hex, type TestImage } from './support/images.js';

let reg: RegistryHandle;
let dir: string;
let daemon: RealDaemon;
let img: TestImage;
let R: string; // <refB64>
let B1: string; // Era B (TOC digest) layer dirs
let B2: string;
let A1: string; // Era A (blob digest) layer dirs
let A2: string;
let A3: string;

const v = val;

beforeAll(async () => {
  reg = await startRegistry();
  dir = await mkdtemp(join(tmpdir(), 'lazy-als-it-sys-'));
  img = await pushTestImage(reg);
  const conf = await writeRegistriesConf(join(dir, 'registries.conf'), [reg.host]);
  daemon = await RealDaemon.start({ dir: join(dir, 'd'), registriesConf: conf });
  R = refElem(`${reg.host}/${img.repo}:${img.tag}`);
  B1 = join(daemon.mnt, R, img.l1.tocDigest);
  B2 = join(daemon.mnt, R, img.l2.tocDigest);
  A1 = join(daemon.mnt, R, img.l1.blobDigest);
  A2 = join(daemon.mnt, R, img.l2.blobDigest);
  A3 = join(daemon.mnt, R, img.l3.blobDigest);
});

afterAll(async () => {
  if (daemon) {
    const r = await daemon.stop();
    expect(r.code).toBe(0);
    expect(r.unmountedByDaemon).toBe(true);
  }
  await reg?.stop();
  if (dir) {
    expect(await leakedMounts([dir])).toEqual([]);
    await rm(dir, { recursive: true, force: true });
  }
});

describe('real daemon, real registry, real mount: the ALS namespace', () => {
  it('diff, info and blob exist for every layer under both keys; blob is the registry blob byte for byte', async () => {
    const layers = [
      { d: B1, blob: img.l1.blob },
      { d: B2, blob: img.l2.blob },
      { d: A1, blob: img.l1.blob },
      { d: A2, blob: img.l2.blob },
      { d: A3, blob: img.l3.blob },
    ];
    for (const { d, blob } of layers) {
      const r = (await probe([
        { op: 'stat', path: join(d, 'diff') },
        { op: 'stat', path: join(d, 'info') },
        { op: 'stat', path: join(d, 'blob') },
        { op: 'read', path: join(d, 'blob') },
        { op: 'readdir', path: d },
      ])).map(v);
      expect(r[0]).toMatchObject({ type: 'dir' });
      expect(r[1]).toMatchObject({ type: 'reg' });
      expect(r[2]).toMatchObject({ type: 'reg', size: blob.length });
      expect(r[3].sha256).toBe(sha256hex(blob));
      expect([...r[4]].sort((a: { name: string }, b: { name: string }) => a.name.localeCompare(b.name))).toEqual([{ name: 'blob', type: 'reg' }, { name: 'diff', type: 'dir' }, { name: 'info', type: 'reg' }]);
    }
    // ...and the same bytes the registry itself serves.
    const res = await fetch(`${reg.url}/v2/${img.repo}/blobs/${img.l2.blobDigest}`);
    expect(sha256hex(Buffer.from(await res.arrayBuffer()))).toBe(sha256hex(img.l2.blob));
  });

  it('info follows the era of the key: Era B (TOC digest) and Era A (blob digest), exact size, same bytes twice', async () => {
    const paths = [B1, B2, A1, A2, A3].map((d) => join(d, 'info'));
    const r = (await probe(paths.flatMap((p) => [{ op: 'stat', path: p }, { op: 'read', path: p }, { op: 'read', path: p }]))).map(v);
    const info = (i: number): Record<string, unknown> => {
      const [st, a, b] = [r[3 * i], r[3 * i + 1], r[3 * i + 2]];
      expect(st.size).toBe(a.length);
      expect(b.sha256).toBe(a.sha256);
      return JSON.parse(a.text) as Record<string, unknown>;
    };
    const eraB1 = info(0);
    expect(eraB1).toMatchObject({ 'toc-digest': img.l1.tocDigest, 'compressed-size': img.l1.blob.length, 'diff-size': -1, compression: 2, flags: { 'expected-layer-diffid': img.l1.diffId } });
    const eraB2 = info(1);
    expect(eraB2).toMatchObject({ 'toc-digest': img.l2.tocDigest, 'compressed-size': img.l2.blob.length, compression: 4, flags: { 'expected-layer-diffid': img.l2.diffId } });
    for (const e of [eraB1, eraB2]) {
      expect(e).not.toHaveProperty('compressed-diff-digest');
      expect(e).not.toHaveProperty('diff-digest');
      for (const k of ['names', 'uidmap', 'gidmap', 'big-data-names']) expect(e).not.toHaveProperty(k);
    }
    expect(info(2)).toMatchObject({ 'compressed-diff-digest': img.l1.blobDigest, 'compressed-size': img.l1.blob.length, 'diff-digest': img.l1.diffId, 'diff-size': img.l1.uncompressedSize, compression: 2 });
    expect(info(3)).toMatchObject({ 'compressed-diff-digest': img.l2.blobDigest, 'diff-digest': img.l2.diffId, compression: 4 });
    expect(info(4)).toMatchObject({ 'compressed-diff-digest': img.l3.blobDigest, 'compressed-size': img.l3.blob.length, 'diff-digest': img.l3.diffId, 'diff-size': img.l3.tar.length, compression: 2 });
    expect(eraB1['uidset']).toEqual(expect.arrayContaining([0, 1000]));
    expect(info(2)).not.toHaveProperty('toc-digest');
  });

  it('readdir with types, attributes, readlink, hardlinks', async () => {
    const d1 = join(B1, 'diff');
    const r = (await probe([
      { op: 'readdir', path: d1 },
      { op: 'readdir', path: join(d1, 'bin') },
      { op: 'readdir', path: join(d1, 'dev') },
      { op: 'readdir', path: join(B2, 'diff', 'etc') },
      { op: 'readdir', path: join(B2, 'diff', 'opq') },
      { op: 'readlink', path: join(d1, 'bin', 'sh') },
      { op: 'lstat', path: join(d1, 'bin', 'ping') },
      { op: 'lstat', path: join(d1, 'bin', 'hl') },
      { op: 'lstat', path: join(d1, 'dev', 'null') },
      { op: 'lstat', path: join(B2, 'diff', 'etc', 'deleted.txt') },
      { op: 'lstat', path: join(d1, 'etc', 'passwd') },
      { op: 'lstat', path: join(d1, '.no.prefetch.landmark') },
      { op: 'readdir', path: join(A3, 'diff', 'plain') },
    ])).map(v);
    expect(r[0]).toEqual([
      { name: 'big', type: 'dir' }, { name: 'bin', type: 'dir' }, { name: 'dev', type: 'dir' },
      { name: 'etc', type: 'dir' }, { name: 'opq', type: 'dir' },
    ]);
    expect(r[1]).toEqual([{ name: 'hl', type: 'reg' }, { name: 'ping', type: 'reg' }, { name: 'sh', type: 'symlink' }]);
    expect(r[2]).toEqual([{ name: 'fifo', type: 'fifo' }, { name: 'null', type: 'char' }]);
    expect(r[3]).toEqual([{ name: 'deleted.txt', type: 'char' }, { name: 'layer2.txt', type: 'reg' }]);
    expect(r[4]).toEqual([{ name: 'new.txt', type: 'reg' }]);
    expect(r[5]).toBe('/bin/busybox');
    expect(r[6]).toMatchObject({ mode: 0o104755, size: L1_FILES['bin/ping'].length, nlink: 2 });
    expect(r[7].ino).toBe(r[6].ino);
    expect(r[8]).toMatchObject({ type: 'char', rdev: 0x103, mode: 0o20666 });
    expect(r[9]).toMatchObject({ type: 'char', rdev: 0, size: 0 });
    expect(r[10]).toMatchObject({ uid: 1000, gid: 1001, mtimeMs: 1704067201000, size: L1_FILES['etc/passwd'].length });
    expect(r[11]).toBe('ENOENT');
    expect(r[12]).toEqual([{ name: 'data.bin', type: 'reg' }, { name: 'hello.txt', type: 'reg' }]);
  });

  it('getxattr: security.capability, user xattrs, both opaque markers; unknown names fail', async () => {
    const ping = join(B1, 'diff', 'bin', 'ping');
    const cap = await run('getfattr', ['-h', '--absolute-names', '-e', 'hex', '-n', 'security.capability', ping]);
    expect(cap.stdout).toContain(`security.capability=0x${CAP.toString('hex')}`);
    expect((await getfattr(ping, 'user.note')).value).toBe('hi');
    expect(await listxattr(ping)).toEqual(expect.arrayContaining(['security.capability', 'user.note']));
    const opq = join(B2, 'diff', 'opq');
    expect((await getfattr(opq, 'trusted.overlay.opaque')).value).toBe('y');
    expect((await getfattr(opq, 'user.overlay.opaque')).value).toBe('y');
    const none = await getfattr(join(B1, 'diff', 'etc'), 'user.nothing');
    expect(none.ok).toBe(false);
    expect(none.stderr).toMatch(/No such attribute/);
  });

  it('file contents equal the input bytes in every format (multi-chunk files included)', async () => {
    const cases: [string, Buffer][] = [
      [join(B1, 'diff', 'etc', 'passwd'), L1_FILES['etc/passwd']],
      [join(B1, 'diff', 'bin', 'ping'), L1_FILES['bin/ping']],
      [join(B1, 'diff', 'bin', 'hl'), L1_FILES['bin/ping']],
      [join(A1, 'diff', 'big', 'cold-a.bin'), L1_FILES['big/cold-a.bin']],
      [join(B2, 'diff', 'etc', 'layer2.txt'), L2_FILES['etc/layer2.txt']],
      [join(B2, 'diff', 'z', 'cold.bin'), L2_FILES['z/cold.bin']],
      [join(A3, 'diff', 'plain', 'hello.txt'), L3_FILES['plain/hello.txt']],
      [join(A3, 'diff', 'plain', 'data.bin'), L3_FILES['plain/data.bin']],
    ];
    const r = (await probe(cases.map(([path]) => ({ op: 'read', path })))).map(v);
    cases.forEach(([, want], i) => expect({ i, len: r[i].length, sha: r[i].sha256 }).toEqual({ i, len: want.length, sha: sha256hex(want) }));
    // A range in the middle of a multi-chunk file, crossing a 1 MiB chunk boundary.
    const dd = await run('sh', ['-c', `dd if=${join(B2, 'diff', 'z', 'cold.bin')} bs=4096 skip=255 count=3 status=none | sha256sum`]);
    expect(dd.stdout.split(' ')[0]).toBe(sha256hex(L2_FILES['z/cold.bin'].subarray(255 * 4096, 258 * 4096)));
  });

  it('use → ENOENT, rmdir of a layer dir (tracked or not) → ENOENT, and the layer is still served', async () => {
    const untracked = join(daemon.mnt, R, 'sha256:' + 'e'.repeat(64));
    const r = (await probe([
      { op: 'stat', path: join(B1, 'use') },
      { op: 'create', path: join(B1, 'use') },
      { op: 'mknod-like', path: join(A3, 'use') },
      { op: 'rmdir', path: B1 },
      { op: 'rmdir', path: B1 },
      { op: 'rmdir', path: untracked },
      { op: 'stat', path: join(B1, 'diff', 'etc', 'passwd') },
      { op: 'read', path: join(B1, 'info') },
    ])).map(v);
    expect(r.slice(0, 6)).toEqual(['ENOENT', 'ENOENT', 'ENOENT', 'ENOENT', 'ENOENT', 'ENOENT']);
    expect(r[6]).toMatchObject({ type: 'reg' });
    expect(JSON.parse(r[7].text)['toc-digest']).toBe(img.l1.tocDigest);
  });

  it('names the store never has → ENOENT: diff1, a key not in the image (answered from the negative cache the second time), a malformed ref', async () => {
    const absent = join(daemon.mnt, R, 'sha256:' + 'a'.repeat(64));
    const r1 = (await probe([
      { op: 'stat', path: join(B1, 'diff1') },
      { op: 'stat', path: join(B1, 'info', 'x') },
      { op: 'stat', path: join(absent, 'diff') },
      { op: 'stat', path: join(daemon.mnt, 'not base64!', img.l1.tocDigest, 'diff') },
      { op: 'stat', path: join(daemon.mnt, Buffer.from('NOT A REF::').toString('base64'), img.l1.tocDigest, 'diff') },
      { op: 'stat', path: join(daemon.mnt, R.replace(/=+$/, ''), img.l1.tocDigest, 'diff') },
      { op: 'stat', path: join(daemon.mnt, R, 'sha256:1234', 'diff') },
    ])).map(v);
    expect(r1).toEqual(['ENOENT', 'ENOTDIR', 'ENOENT', 'ENOENT', 'ENOENT', 'ENOENT', 'ENOENT']);
    // Repeated negative lookups do no registry work (the fast path of ALS-LK-3).
    const mark = logMark(reg.logPath);
    const r2 = (await probe([{ op: 'stat', path: join(absent, 'diff') }, { op: 'stat', path: join(absent, 'info') }])).map(v);
    expect(r2).toEqual(['ENOENT', 'ENOENT']);
    expect(accessSince(reg.logPath, mark)).toEqual([]);
  });

  it('every write answers EROFS', async () => {
    const d = join(B1, 'diff');
    const r = (await probe([
      { op: 'openWrite', path: join(d, 'etc', 'passwd') },
      { op: 'create', path: join(d, 'etc', 'new.txt') },
      { op: 'mkdir', path: join(d, 'newdir') },
      { op: 'unlink', path: join(d, 'etc', 'passwd') },
      { op: 'rename', path: join(d, 'etc', 'passwd'), to: join(d, 'etc', 'x') },
      { op: 'symlink', path: join(d, 'lnk') },
      { op: 'chmod', path: join(d, 'etc', 'passwd') },
      { op: 'truncate', path: join(d, 'etc', 'passwd') },
      { op: 'openWrite', path: join(B1, 'info') },
      { op: 'openWrite', path: join(A3, 'blob') },
    ])).map(v);
    expect(r).toEqual(Array(10).fill('EROFS'));
  });
});

describe('a real overlayfs over two store layers', () => {
  it('whiteouts hide lower files, opaque dirs hide lower children, copy-up from the FUSE lower keeps content and xattrs', async () => {
    const ov = join(dir, 'ov');
    const [merged, upper, work] = ['merged', 'upper', 'work'].map((n) => join(ov, n)) as [string, string, string];
    for (const p of [merged, upper, work]) await mkdir(p, { recursive: true });
    // ':' separates lowerdirs, so the colon of "sha256:" is escaped (c/storage uses short symlinks instead).
    const esc = (p: string): string => p.replaceAll(':', '\\:');
    const mo = await run('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${esc(join(B2, 'diff'))}:${esc(join(B1, 'diff'))},upperdir=${upper},workdir=${work}`, merged]);
    expect(mo.stderr).toBe('');
    expect(mo.code).toBe(0);
    try {
      const r = (await probe([
        { op: 'readdir', path: join(merged, 'etc') },
        { op: 'readdir', path: join(merged, 'opq') },
        { op: 'stat', path: join(merged, 'etc', 'deleted.txt') },
        { op: 'stat', path: join(merged, 'opq', 'old.txt') },
        { op: 'read', path: join(merged, 'etc', 'passwd') },
        { op: 'read', path: join(merged, 'etc', 'layer2.txt') },
        { op: 'readdir', path: merged },
        { op: 'chmod', path: join(merged, 'bin', 'ping') }, // copy-up from the FUSE lower
        { op: 'read', path: join(upper, 'bin', 'ping') },
      ])).map(v);
      expect(r[0]).toEqual([{ name: 'layer2.txt', type: 'reg' }, { name: 'passwd', type: 'reg' }]);
      expect(r[1]).toEqual([{ name: 'new.txt', type: 'reg' }]);
      expect(r[2]).toBe('ENOENT');
      expect(r[3]).toBe('ENOENT');
      expect(r[4].text).toBe(L1_FILES['etc/passwd'].toString());
      expect(r[5].text).toBe(L2_FILES['etc/layer2.txt'].toString());
      expect(r[6].map((e: { name: string }) => e.name)).toEqual(['big', 'bin', 'dev', 'etc', 'opq', 'z']);
      expect(r[7]).toBe('chmodded');
      expect(r[8].sha256).toBe(sha256hex(L1_FILES['bin/ping']));
      // The copied-up file keeps the lower file's xattrs (overlay copies them from the FUSE layer).
      expect((await getfattr(join(upper, 'bin', 'ping'), 'user.note')).value).toBe('hi');
    } finally {
      await run('umount', [merged]);
    }
    expect(await leakedMounts([ov])).toEqual([]);
  });
});
