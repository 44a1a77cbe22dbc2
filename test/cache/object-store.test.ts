import { mkdir, readdir, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { sha256Of, type Digest } from '../../src/core/digest.js';
import { DigestMismatchError } from '../../src/core/errors.js';
import { CacheError } from '../../src/cache/errors.js';
import { ObjectStore } from '../../src/cache/object-store.js';
import { tempDir, tinyTmpfs, unmount } from './support/tmp.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

async function openStore(root?: string): Promise<ObjectStore> {
  const dir = root ?? (await tempDir());
  if (!root) cleanups.push(() => rm(dir, { recursive: true, force: true }));
  return ObjectStore.open({ dir: join(dir, 'objects'), tmpDir: join(dir, 'tmp') });
}

async function filesUnder(dir: string): Promise<string[]> {
  return (await readdir(dir, { recursive: true, withFileTypes: true })).filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name));
}

describe('ObjectStore', () => {
  it('stores content under objects/sha256/ab/cdef… and reads it back verified', async () => {
    const s = await openStore();
    const data = Buffer.from('hello chunk');
    const d = sha256Of(data);
    expect(await s.put(d, data)).toBe(true);
    expect(await s.put(d, data)).toBe(false);
    const hex = d.slice(7);
    expect(s.pathOf(d).endsWith(join('objects', 'sha256', hex.slice(0, 2), hex.slice(2)))).toBe(true);
    expect(await readFile(s.pathOf(d))).toEqual(data);
    expect(await s.get(d)).toEqual(data);
    expect(await s.has(d)).toBe(true);
    const listed = [];
    for await (const o of s.list()) listed.push(o);
    expect(listed.map((o) => [o.digest, o.size])).toEqual([[d, data.length]]);
    expect(await s.usage()).toEqual({ objects: 1, bytes: data.length });
    expect(await s.delete(d)).toBe(data.length);
    expect(await s.get(d)).toBeUndefined();
    expect(await filesUnder(s.tmpDir)).toEqual([]);
  });

  it('verifies before writing: bytes that do not match the digest never land', async () => {
    const s = await openStore();
    const d = sha256Of(Buffer.from('the real content'));
    await expect(s.put(d, Buffer.from('forged content'))).rejects.toBeInstanceOf(DigestMismatchError);
    expect(await s.has(d)).toBe(false);
    expect(await filesUnder(s.dir)).toEqual([]);
    expect(await filesUnder(s.tmpDir)).toEqual([]);
    // Streaming put: hashed while written, renamed only on a match.
    async function* gen(): AsyncIterable<Buffer> {
      yield Buffer.from('forged ');
      yield Buffer.from('content');
    }
    await expect(s.putStream(d, gen())).rejects.toBeInstanceOf(DigestMismatchError);
    expect(await filesUnder(s.dir)).toEqual([]);
    expect(await filesUnder(s.tmpDir)).toEqual([]);
  });

  it('a delete that cannot unlink rejects with the errno (a quarantined layer\'s object left behind is never silent)', async () => {
    if (process.getuid?.() !== 0) return; // chattr +i needs CAP_LINUX_IMMUTABLE: the one real way to make root's unlink fail
    const { execFileSync } = await import('node:child_process');
    const s = await openStore();
    const data = Buffer.from('undeletable chunk');
    const d = sha256Of(data);
    await s.put(d, data);
    execFileSync('chattr', ['+i', s.pathOf(d)]);
    cleanups.push(async () => void execFileSync('chattr', ['-i', s.pathOf(d)]));
    await expect(s.delete(d)).rejects.toMatchObject({ code: 'EPERM' });
    expect(await s.has(d)).toBe(true);
  });

  it('never serves a torn or corrupt object file, and deletes it', async () => {
    const s = await openStore();
    const data = Buffer.alloc(100_000, 7);
    const d = sha256Of(data);
    await s.put(d, data);
    await truncate(s.pathOf(d), 4096); // torn
    expect(await s.get(d)).toBeUndefined();
    expect(await s.has(d)).toBe(false);
    expect(s.stats.corruptDeleted).toBe(1);

    // A pre-existing file written by "someone else" with wrong content at the right path.
    const other = Buffer.from('chunk two');
    const d2 = sha256Of(other);
    await mkdir(join(s.pathOf(d2), '..'), { recursive: true });
    await writeFile(s.pathOf(d2), 'chunk tw0');
    expect(await s.readRange(d2, 0, 3)).toBeUndefined(); // range reads verify the whole object first
    expect(await s.has(d2)).toBe(false);
  });

  it('serves ranges of a large object after verifying it once', async () => {
    const s = await openStore();
    const big = Buffer.alloc(3 << 20);
    for (let i = 0; i < big.length; i += 4096) big[i] = i % 251;
    const d = sha256Of(big);
    async function* pieces(): AsyncIterable<Buffer> {
      for (let o = 0; o < big.length; o += 1 << 20) yield big.subarray(o, o + (1 << 20));
    }
    await s.putStream(d, pieces(), big.length);
    expect(await s.readRange(d, 12_288, 10_000)).toEqual(big.subarray(12_288, 22_288));
    expect(await s.readRange(d, big.length - 5, 100)).toEqual(big.subarray(big.length - 5));
    // Replaced behind our back (new inode): re-verified, detected, deleted.
    await rm(s.pathOf(d));
    await writeFile(s.pathOf(d), Buffer.alloc(big.length));
    expect(await s.readRange(d, 0, 10)).toBeUndefined();
    expect(await s.has(d)).toBe(false);
  });

  it('sweeps temp files of dead writers at open', async () => {
    const root = await tempDir();
    cleanups.push(() => rm(root, { recursive: true, force: true }));
    await mkdir(join(root, 'tmp'), { recursive: true });
    // pid 4194304 is above the default pid_max: never alive.
    const stale = join(root, 'tmp', 'w-4194304-0123456789abcdef.tmp');
    const junk = join(root, 'tmp', 'junk');
    await writeFile(stale, 'partial');
    await writeFile(junk, 'x');
    await openStore(root);
    await expect(stat(stale)).rejects.toMatchObject({ code: 'ENOENT' });
    await expect(stat(junk)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('full disk (real 64 KiB tmpfs): typed CACHE_NO_SPACE, temp file removed, nothing cached', async () => {
    const mnt = await tinyTmpfs('64k');
    if (!mnt) {
      expect.soft(process.getuid?.(), 'tmpfs mount needs root').not.toBe(0);
      return;
    }
    cleanups.push(() => unmount(mnt));
    const s = await openStore(mnt);
    const big = Buffer.alloc(200_000, 1);
    const d = sha256Of(big) as Digest;
    const err = await s.put(d, big).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CacheError);
    expect((err as CacheError).code).toBe('CACHE_NO_SPACE');
    expect(await s.has(d)).toBe(false);
    expect(await filesUnder(s.tmpDir)).toEqual([]);
    expect(await filesUnder(s.dir)).toEqual([]);
    expect(s.stats.noSpace).toBe(1);
    // Small objects still fit afterwards.
    const small = Buffer.from('fits');
    expect(await s.put(sha256Of(small), small)).toBe(true);
  });
});
